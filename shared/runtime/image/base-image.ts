// The base image of Node functions, as the image builder needs it: its config and layers.
//
// With a registry, the base must be in it once: every function image's manifest lists the base's
// layers, mounted into the function's repository, never uploaded again. The engine holds the base
// (FUNCTION_BASE_IMAGE, built or pulled by the operator); the first build that finds the registry
// without it tags it there and has the engine push it. Its tag carries the engine's image id, so a
// rebuilt base is pushed anew under a new tag rather than mixed with the old one's layers. The
// manifest and config read back from the registry are kept in memory per image id.
//
// Without a registry, the engine's own copy is the base: its config comes from an inspect.
import type Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { followDockerStream } from '../docker-stream.ts';
import { splitImageTag, type RegistryClient } from '../registry.ts';
import { InfrastructureError } from '../types.ts';
import { engineMessage, engineUnreachable, idleSignal, registryDownInEngineMessage } from './engine.ts';
import { parseManifest, type Descriptor, type ImageConfigJson } from './image-config.ts';

export interface RegistryBase {
  /** where the base is in the registry */
  repository: string;
  tag: string;
  /** the engine's image id of the base (the sha256 of its config) */
  imageId: string;
  config: ImageConfigJson;
  layers: Descriptor[];
}

const statusOf = (err: unknown): number | undefined => (err as { statusCode?: number } | null)?.statusCode;

/** The engine's image id of the base; a clear error when the engine does not have it. */
export async function localBaseImage(docker: Docker, baseImage: string): Promise<Docker.ImageInspectInfo> {
  try {
    return await docker.getImage(baseImage).inspect();
  } catch (err) {
    if (statusOf(err) === 404) {
      throw new Error(
        `the base image ${baseImage} (FUNCTION_BASE_IMAGE) is not on the Docker engine: build or pull it there ` +
          '(scripts/setup-services.sh builds containerpub/node-base:20)',
      );
    }
    if (engineUnreachable(err)) throw new InfrastructureError('engine', `the Docker engine did not answer: ${engineMessage(err)}`, { cause: err });
    throw new Error(`inspecting the base image ${baseImage} failed: ${engineMessage(err)}`);
  }
}

/** The base's config as the engine describes it (no registry: what `docker load` builds on). */
export function engineBaseConfig(inspect: Docker.ImageInspectInfo, baseImage: string): ImageConfigJson {
  const diffIds = inspect.RootFS?.Layers ?? [];
  return {
    architecture: inspect.Architecture,
    os: inspect.Os,
    config: inspect.Config as unknown as ImageConfigJson['config'],
    rootfs: { type: 'layers', diff_ids: diffIds },
    // one line per base layer: the engine's own history of the base is not needed to run it
    history: diffIds.map(() => ({ created: '1970-01-01T00:00:00Z', created_by: `base image ${baseImage}` })),
  };
}

/**
 * The base's repository and tag in the registry: its own repository name (without any registry
 * prefix) and its tag followed by 12 hex digits of the engine's image id.
 *   containerpub/node-base:20, sha256:549fdd2bb3aa… → containerpub/node-base:20-549fdd2bb3aa
 */
export function baseRegistryName(baseImage: string, imageId: string): { repository: string; tag: string } {
  const { repository, tag } = splitImageTag(baseImage);
  const hex = imageId.replace(/^sha256:/, '').slice(0, 12);
  // a digest reference (name@sha256:…) has no tag worth keeping
  const readable = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(tag) ? tag.slice(0, 100) : 'id';
  return { repository: repository.toLowerCase(), tag: `${readable}-${hex}` };
}

export class BaseImageInRegistry {
  private readonly loaded = new Map<string, Promise<RegistryBase>>();

  constructor(
    private readonly opts: {
      docker: Docker;
      /** FUNCTION_BASE_IMAGE, as the engine names it */
      baseImage: string;
      /** the registry as engines name it (REGISTRY) */
      registry: string;
      /** the registry as this process reaches it */
      client: RegistryClient;
      /** a push by the engine that sends nothing for this long is given up */
      idleTimeoutMs: number;
    },
  ) {}

  /**
   * The base in the registry, pushed there first when missing. The work is shared by the builds
   * that ask at the same time and is not tied to any one build's signal: an aborted build stops
   * waiting, the push goes on for the others.
   */
  async resolve(signal: AbortSignal, log: (line: string) => void): Promise<RegistryBase> {
    const inspect = await localBaseImage(this.opts.docker, this.opts.baseImage);
    let pending = this.loaded.get(inspect.Id);
    if (!pending) {
      pending = this.load(inspect, log);
      this.loaded.set(inspect.Id, pending);
      pending.catch(() => this.loaded.delete(inspect.Id));
    }
    return raceAbort(pending, signal);
  }

  /** Forgets what was read (its layers were found missing from the registry): the next build looks again. */
  forget(imageId: string): void {
    this.loaded.delete(imageId);
  }

  private async load(inspect: Docker.ImageInspectInfo, log: (line: string) => void): Promise<RegistryBase> {
    const { client } = this.opts;
    const { repository, tag } = baseRegistryName(this.opts.baseImage, inspect.Id);
    const where = `${this.opts.registry}/${repository}:${tag}`;
    let manifest = await client.getManifest(repository, tag);
    let parsed = manifest ? parseManifest(manifest, `the base image ${where}`) : null;
    // docker pushes the engine's config as is, so its digest is the image id: anything else under
    // this tag is not this engine's base (overwritten by hand): push ours over it
    if (!parsed || parsed.config.digest !== inspect.Id) {
      await this.pushWithEngine(repository, tag, log);
      manifest = await client.getManifest(repository, tag);
      if (!manifest) throw new Error(`the engine pushed the base image to ${where}, but the registry does not have it`);
      parsed = parseManifest(manifest, `the base image ${where}`);
      if (parsed.config.digest !== inspect.Id) {
        throw new Error(`the base image at ${where} has the config ${parsed.config.digest}, not the engine's ${inspect.Id}`);
      }
    }
    const config = JSON.parse((await client.getBlob(repository, parsed.config.digest)).toString('utf8')) as ImageConfigJson;
    if ((config.rootfs?.diff_ids ?? []).length !== parsed.layers.length) {
      throw new Error(`the base image at ${where} lists ${parsed.layers.length} layers but its config ${config.rootfs?.diff_ids?.length ?? 0}`);
    }
    return { repository, tag, imageId: inspect.Id, config, layers: parsed.layers };
  }

  /** Tags the engine's base into the registry's name and has the engine push it (once per base). */
  private async pushWithEngine(repository: string, tag: string, log: (line: string) => void): Promise<void> {
    const { docker, registry, baseImage } = this.opts;
    const target = `${registry}/${repository}`;
    const started = performance.now();
    log(`base image: ${baseImage} is not in the registry yet: pushing it as ${target}:${tag} (once)`);
    // the tag stays on the engine: removing it could race another runner's push of the same base
    try {
      await docker.getImage(baseImage).tag({ repo: target, tag });
    } catch (err) {
      if (engineUnreachable(err)) throw new InfrastructureError('engine', `the Docker engine did not answer: ${engineMessage(err)}`, { cause: err });
      throw new Error(`tagging the base image ${baseImage} as ${target}:${tag} failed: ${engineMessage(err)}`);
    }
    let stream: Readable;
    try {
      stream = (await docker.getImage(target).push({ tag })) as Readable;
    } catch (err) {
      if (engineUnreachable(err)) throw new InfrastructureError('engine', `the Docker engine did not answer: ${engineMessage(err)}`, { cause: err });
      throw new Error(`the push of the base image ${target}:${tag} was refused: ${engineMessage(err)}`);
    }
    const idle = idleSignal(stream, this.opts.idleTimeoutMs);
    try {
      const scan = await followDockerStream(stream, { signal: idle.signal }).catch((err: Error) => {
        throw new InfrastructureError('registry', `the push of the base image ${target}:${tag} broke: ${err.message}`, { cause: err });
      });
      if (scan.error) {
        const message = `the push of the base image ${target}:${tag} failed: ${scan.error}`;
        throw registryDownInEngineMessage(scan.error) ? new InfrastructureError('registry', message) : new Error(message);
      }
    } finally {
      idle.stop();
    }
    log(`base image: pushed ${target}:${tag} in ${Math.round(performance.now() - started)} ms`);
  }
}

/** `promise`, or the signal's abort, whichever comes first. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
