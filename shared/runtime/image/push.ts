// Pushes an image straight from this process to the registry with the distribution API, the way
// ko and jib do, with no engine in between: every blob (layers, config) is made present in the
// target repository, cheapest way first, then the manifest is stored under its tag.
//   1. HEAD: the repository has it already (a retried build) → nothing to send;
//   2. a cross-repository mount from a repository known to hold it (the base image's layers, a
//      dependencies layer pushed before) → the registry links it, nothing is sent;
//   3. a monolithic upload (POST opens a session, one PUT sends the whole blob).
// A blob that can only be mounted (the base image's layers: the runner does not hold them) and
// cannot be fails with BlobNotMountableError: its source is gone from the registry.
import { MEDIA_TYPE, type BlobBody, type CallOptions, type RegistryClient } from '../registry.ts';
import { allOrAbort } from './all-settled.ts';
import type { Descriptor } from './image-config.ts';

export interface BlobToPush {
  descriptor: Descriptor;
  /** what it is, for the build log: 'base layer', 'function layer', 'config' */
  what: string;
  /** its bytes; absent when it can only be mounted */
  body?: BlobBody;
  /** a repository of the same registry that holds it */
  mountFrom?: string;
}

export type BlobOutcome = 'present' | 'mounted' | 'uploaded';

export class BlobNotMountableError extends Error {
  constructor(
    readonly digest: string,
    readonly from: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'BlobNotMountableError';
  }
}

/** Makes one blob present in `repository`; says how. */
export async function pushBlob(client: RegistryClient, repository: string, blob: BlobToPush, opts: CallOptions = {}): Promise<BlobOutcome> {
  const { digest } = blob.descriptor;
  if (await client.blobExists(repository, digest, opts)) return 'present';
  let uploadUrl: string | null = null;
  if (blob.mountFrom && blob.mountFrom !== repository) {
    const mount = await client.mountBlob(repository, digest, blob.mountFrom, opts);
    if (mount.mounted) return 'mounted';
    // the registry opened an upload session instead: used below when there is something to send
    uploadUrl = mount.uploadUrl;
  }
  if (!blob.body) {
    if (uploadUrl) await client.cancelUpload(repository, uploadUrl);
    throw new BlobNotMountableError(
      digest,
      blob.mountFrom,
      `the ${blob.what} ${digest} could not be mounted into ${repository}${blob.mountFrom ? ` from ${blob.mountFrom}` : ''}: it is not in the registry any more`,
    );
  }
  uploadUrl ??= await client.startUpload(repository, opts);
  try {
    await client.uploadBlob(repository, uploadUrl, digest, blob.body, opts);
  } catch (err) {
    await client.cancelUpload(repository, uploadUrl);
    throw err;
  }
  return 'uploaded';
}

export interface PushedImage {
  /** the manifest's digest (what a registry delete needs) */
  digest: string;
  outcomes: { blob: BlobToPush; outcome: BlobOutcome }[];
}

/** Pushes the blobs side by side, then the manifest under `tag`. */
export async function pushImage(
  client: RegistryClient,
  repository: string,
  tag: string,
  image: { blobs: BlobToPush[]; manifest: { bytes: Buffer; mediaType?: string } },
  opts: CallOptions = {},
): Promise<PushedImage> {
  const outcomes = await allOrAbort(
    opts.signal,
    image.blobs.map((blob) => async (signal: AbortSignal) => ({ blob, outcome: await pushBlob(client, repository, blob, { signal }) })),
  );
  // only once every blob is there: a registry refuses a manifest naming a blob it lacks
  const digest = await client.putManifest(
    repository,
    tag,
    { bytes: image.manifest.bytes, mediaType: image.manifest.mediaType ?? MEDIA_TYPE.dockerManifest },
    opts,
  );
  return { digest, outcomes };
}
