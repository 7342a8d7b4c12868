// The image config and manifest of a Node function's image: the base image's, plus the platform's
// layers, run settings and labels. Both are JSON documents whose sha256 is their identity, so they
// are built from fixed inputs only: no wall-clock time anywhere (every `created` is the epoch), and
// keys in a fixed order. The same base, layers and labels give the same image id and manifest digest.
import { sha256Digest, MEDIA_TYPE, type StoredManifest } from '../registry.ts';
import { APP_DIR, LABEL_FUNCTION, LABEL_VERSION } from '../docker-instances.ts';
import { BOOTSTRAP_FILE } from '../protocol.ts';

/** Set on images the platform builds for Node functions: their command is the bootstrap. */
export const LABEL_RUNTIME = 'containerpub.runtime';
/** The user a function runs as: nobody (the instance sets it too; here it makes `docker run` safe). */
export const IMAGE_USER = '65534:65534';
export const IMAGE_CMD = ['node', `${APP_DIR}/${BOOTSTRAP_FILE}`];
export const EPOCH_ISO = '1970-01-01T00:00:00Z';

/** A content descriptor of a manifest: what a blob is, how big, and its digest. */
export interface Descriptor {
  mediaType: string;
  size: number;
  digest: string;
}

/** A JSON document as bytes, with its digest. */
export interface Document {
  bytes: Buffer;
  digest: string;
}

/** The parts of a Docker/OCI image config this module reads; the rest is carried over as is. */
export interface ImageConfigJson {
  architecture?: string;
  os?: string;
  config?: Record<string, unknown> & { Labels?: Record<string, string> | null };
  rootfs?: { type: string; diff_ids: string[] };
  history?: Record<string, unknown>[];
  [key: string]: unknown;
}

export interface AddedLayer {
  diffId: string;
  /** the history line of the layer (what `docker history` shows) */
  createdBy: string;
}

const document = (value: unknown): Document => {
  const bytes = Buffer.from(JSON.stringify(value));
  return { bytes, digest: sha256Digest(bytes) };
};

/**
 * The config of a function's image: the base's, with the layers added after its own, the bootstrap
 * as its command, nobody as its user, /app as its directory, and the platform's labels. Fields that
 * describe how the base itself was built (its build container, its daemon's version) are dropped:
 * they are not true of this image.
 */
export function nodeImageConfig(
  base: ImageConfigJson,
  added: AddedLayer[],
  labels: { functionId: string; version: number },
): Document {
  const { container: _c, container_config: _cc, docker_version: _dv, created: _cr, config: baseRun, rootfs, history, ...rest } = base;
  if (!rootfs || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids)) {
    throw new Error('the base image config has no rootfs layers');
  }
  const config = {
    ...rest,
    created: EPOCH_ISO,
    config: {
      ...(baseRun ?? {}),
      User: IMAGE_USER,
      WorkingDir: APP_DIR,
      Entrypoint: null,
      Cmd: IMAGE_CMD,
      Labels: {
        ...(baseRun?.Labels ?? {}),
        [LABEL_RUNTIME]: 'node',
        [LABEL_FUNCTION]: labels.functionId,
        [LABEL_VERSION]: String(labels.version),
      },
    },
    rootfs: { type: 'layers', diff_ids: [...rootfs.diff_ids, ...added.map((l) => l.diffId)] },
    history: [...(history ?? []), ...added.map((l) => ({ created: EPOCH_ISO, created_by: l.createdBy }))],
  };
  return document(config);
}

/** A Docker schema2 manifest of a config and its layers (base layers first). */
export function imageManifest(config: Descriptor, layers: Descriptor[]): Document & { mediaType: string } {
  return {
    ...document({ schemaVersion: 2, mediaType: MEDIA_TYPE.dockerManifest, config, layers }),
    mediaType: MEDIA_TYPE.dockerManifest,
  };
}

export interface ParsedManifest {
  config: Descriptor;
  layers: Descriptor[];
}

/**
 * Reads a single-image manifest (Docker schema2 or OCI). Layer descriptors are given the Docker
 * media type, which means the same gzipped tar: a function's manifest is a Docker one whatever its
 * base's was. A list or index (a multi-platform image) is refused: the platform builds for the
 * engine's own platform, from one image.
 */
export function parseManifest(manifest: StoredManifest, what: string): ParsedManifest {
  let body: { mediaType?: string; schemaVersion?: number; config?: Descriptor; layers?: Descriptor[] };
  try {
    body = JSON.parse(manifest.bytes.toString('utf8'));
  } catch {
    throw new Error(`${what}: the manifest is not JSON`);
  }
  const mediaType = body.mediaType ?? manifest.mediaType;
  if (mediaType === MEDIA_TYPE.dockerManifestList || mediaType === MEDIA_TYPE.ociIndex) {
    throw new Error(`${what}: a multi-platform image (${mediaType}); one platform's image is needed`);
  }
  if (body.schemaVersion !== 2 || !body.config || !Array.isArray(body.layers)) {
    throw new Error(`${what}: not a schema 2 image manifest (${mediaType || 'no media type'})`);
  }
  const layers = body.layers.map((l) => {
    if (l.mediaType !== MEDIA_TYPE.dockerLayer && l.mediaType !== MEDIA_TYPE.ociLayer) {
      throw new Error(`${what}: a layer of type ${l.mediaType} (only gzipped tar layers are supported)`);
    }
    return { mediaType: MEDIA_TYPE.dockerLayer, size: l.size, digest: l.digest };
  });
  return { config: body.config, layers };
}
