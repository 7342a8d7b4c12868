// The docker driver: one image per function version (pushed to the registry when one is
// configured); its instances are long-lived, locked-down containers (docker-instances.ts).
import Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { packContext } from './docker-context.ts';
import { APP_DIR, DockerInstances, LABEL_FUNCTION, LABEL_VERSION } from './docker-instances.ts';
import { followDockerStream } from './docker-stream.ts';
import { ArtifactMissingError, BOOTSTRAP_DIR, bootstrapFiles, checkEntry, type RuntimeLogger } from './protocol.ts';
import { RegistryClient, splitImageTag } from './registry.ts';
import {
  BuildError,
  type ArtifactRef,
  type BuildInput,
  type BuildResult,
  type InstanceBackend,
  type RuntimeDriver,
} from './types.ts';

export interface DockerDriverOptions {
  docker?: Docker;
  /** host:port of the registry images are pushed to; unset: no push and no prefix in tags */
  registry?: string;
  /**
   * How this process reaches that registry's HTTP API, when not by the name in the tags (in
   * docker-compose the engine pushes to localhost:5000 while the runner reaches registry:5000).
   */
  registryApiUrl?: string;
  /** the image Node functions are built FROM (node on PATH, no shell needed) */
  baseImage: string;
  /** INSTANCE_DIR: socket directories of instances, at the same path for this process and the engine */
  instanceDir: string;
  /** CPU share of one instance, e.g. 1 */
  cpus: number;
  /** processes/threads one instance may have, e.g. 128 */
  pidsLimit: number;
  /** the Docker network of instances with network "outbound" (FUNCTION_NETWORK); made if missing */
  network?: string;
  logger?: RuntimeLogger;
}

export { LABEL_FUNCTION, LABEL_VERSION } from './docker-instances.ts';
/** Set only on images built from the generated Dockerfile: they run the bootstrap. */
export const LABEL_RUNTIME = 'containerpub.runtime';

/** Where the generated Dockerfile sits in the context (not `Dockerfile`: never the user's file). */
const GENERATED_DOCKERFILE = `${BOOTSTRAP_DIR}/Dockerfile`;

/** The image of one function version: `[registry/]function-<id>-v<n>:latest`. */
export function imageTagFor(registry: string | null | undefined, functionId: string, version: number): string {
  return `${registry ? registry + '/' : ''}function-${functionId}-v${version}:latest`;
}

/**
 * The generated Dockerfile of a Node function. Every step costs about a second on vfs and the base
 * image has no shell, so there is no RUN/USER/CMD: user, command and workdir are set when the
 * container is created. LABEL comes before COPY so that every intermediate image of the build
 * carries the function's labels: what an aborted or failed build leaves behind can then be found
 * (and removed) by label.
 */
export function nodeDockerfile(baseImage: string, functionId: string, version: number): string {
  const labels = [
    `${LABEL_RUNTIME}="node"`,
    `${LABEL_FUNCTION}=${JSON.stringify(functionId)}`,
    `${LABEL_VERSION}="${version}"`,
  ].join(' ');
  return `FROM ${baseImage}\nLABEL ${labels}\nCOPY . ${APP_DIR}/\n`;
}

interface ImageInfo {
  /** built from the generated Dockerfile: run the bootstrap */
  node: boolean;
  /** the image's id (what a container of it keeps using when the tag is removed) */
  id: string;
}

const statusOf = (err: unknown): number | undefined => (err as { statusCode?: number } | null)?.statusCode;

/** The engine's own message from a dockerode error (its JSON body), else the error's message. */
function engineMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; reason?: string; message?: string };
  return (e?.json?.message ?? e?.message ?? String(err)).trim();
}

export class DockerDriver implements RuntimeDriver {
  readonly name = 'docker' as const;
  readonly docker: Docker;
  private readonly registry: string | undefined;
  private readonly images = new Map<string, ImageInfo>();
  readonly instances: InstanceBackend;

  constructor(private readonly opts: DockerDriverOptions) {
    this.docker = opts.docker ?? new Docker();
    this.registry = opts.registry?.trim() || undefined;
    this.instances = new DockerInstances({
      docker: this.docker,
      instanceDir: opts.instanceDir,
      limits: { cpus: opts.cpus, pidsLimit: opts.pidsLimit },
      network: opts.network ?? 'containerpub-functions',
      imageInfo: (tag) => this.ensureImage(tag),
      forgetImage: (tag) => this.images.delete(tag),
      imageTag: (spec) => imageTagFor(this.registry, spec.functionId, spec.version),
      logger: opts.logger,
    });
  }

  describe(): string {
    return `docker driver (base image ${this.opts.baseImage}, registry ${this.registry ?? 'none: images stay local'}, ` +
      `${this.opts.cpus} CPU, ${this.opts.pidsLimit} pids per instance, no network)`;
  }

  async build(input: BuildInput): Promise<BuildResult> {
    const tag = imageTagFor(this.registry, input.functionId, input.version);
    const { signal } = input;
    const aborted = () => new BuildError('build aborted');
    if (signal.aborted) throw aborted();

    // an earlier attempt at this version (aborted, or failed mid-way) may have left layers
    await this.sweepBuildLeftovers(input.functionId, input.version);
    const fn = input.function;
    const node = fn.kind === 'node';
    const entry = fn.kind === 'node' ? await checkEntry(input.sourceDir, fn.entry) : null;
    const context =
      entry !== null
        ? packContext(input.sourceDir, {
            extra: [
              ...bootstrapFiles(entry),
              {
                path: GENERATED_DOCKERFILE,
                content: Buffer.from(nodeDockerfile(this.opts.baseImage, input.functionId, input.version)),
              },
            ],
            // the platform writes the Dockerfile, so the user's .dockerignore has no say in what
            // reaches /app, and .containerpub/ is the platform's
            exclude: ['.dockerignore', BOOTSTRAP_DIR],
          })
        : packContext(input.sourceDir);

    const started = performance.now();
    input.log(`building ${tag} (${entry ? `node, entry ${entry}` : 'custom Dockerfile'})`);
    let built = false;
    try {
      const buildOptions: Record<string, unknown> = {
        t: tag,
        networkmode: 'none',
        rm: true,
        forcerm: true,
        abortSignal: signal,
      };
      if (node) {
        buildOptions.dockerfile = GENERATED_DOCKERFILE;
      } else {
        // each label is one more build step: the generated Dockerfile carries them itself
        buildOptions.labels = { [LABEL_FUNCTION]: input.functionId, [LABEL_VERSION]: String(input.version) };
      }
      let stream: Readable;
      try {
        stream = (await this.docker.buildImage(context as unknown as NodeJS.ReadableStream, buildOptions)) as Readable;
      } catch (err) {
        context.destroy();
        if (signal.aborted) throw aborted();
        throw new BuildError(`the engine refused the build: ${engineMessage(err)}`);
      }
      let scan;
      try {
        scan = await followDockerStream(stream, { onLine: (line) => input.log(line), signal });
      } catch (err) {
        context.destroy();
        if (signal.aborted) throw aborted();
        throw new BuildError(`the build stream broke: ${(err as Error).message}`);
      }
      // the engine reports a failed step inside a stream that ends normally
      if (scan.error) throw new BuildError(`the build failed: ${scan.error}`);
      let imageId: string;
      try {
        imageId = (await this.docker.getImage(tag).inspect()).Id;
      } catch (err) {
        throw new BuildError(`the build reported success but ${tag} is not there: ${engineMessage(err)}`);
      }
      built = true; // this build made the image: a later failure (the push) removes it
      input.log(`built ${tag} in ${Math.round(performance.now() - started)} ms`);

      if (this.registry) {
        if (signal.aborted) throw aborted();
        await this.push(tag, input.log, signal);
      }
      this.images.set(tag, { node, id: imageId });
      return { imageTag: tag };
    } catch (err) {
      if (built) await this.removeLocalImage(tag).catch(() => {});
      await this.sweepBuildLeftovers(input.functionId, input.version);
      if (err instanceof BuildError) throw err;
      if (signal.aborted) throw aborted();
      throw err;
    }
  }

  async cloneArtifact(from: ArtifactRef, to: { functionId: string; version: number }, log: (line: string) => void): Promise<BuildResult> {
    const source = from.imageTag ?? imageTagFor(this.registry, from.functionId, from.version);
    const tag = imageTagFor(this.registry, to.functionId, to.version);
    const info = await this.ensureImage(source); // pulled when another host built it
    const { registry, repository, tag: version } = splitImageTag(tag);
    try {
      await this.docker.getImage(source).tag({ repo: registry ? `${registry}/${repository}` : repository, tag: version });
    } catch (err) {
      throw new BuildError(`tagging ${source} as ${tag} failed: ${engineMessage(err)}`);
    }
    log(`tagged ${source} as ${tag} (the same image: no build)`);
    // its own repository in the registry: removing one version's image never touches the other's
    if (this.registry) await this.push(tag, log, new AbortController().signal);
    this.images.set(tag, info);
    return { imageTag: tag };
  }

  private async push(tag: string, log: (line: string) => void, signal: AbortSignal): Promise<void> {
    const started = performance.now();
    const { registry, repository, tag: version } = splitImageTag(tag);
    let stream: Readable;
    try {
      stream = (await this.docker.getImage(`${registry}/${repository}`).push({ tag: version, abortSignal: signal })) as Readable;
    } catch (err) {
      if (signal.aborted) throw new BuildError('build aborted');
      throw new BuildError(`the push of ${tag} was refused: ${engineMessage(err)}`);
    }
    // push progress is mostly per-layer noise: only the outcome goes to the build log
    const scan = await followDockerStream(stream, { signal }).catch((err: Error) => {
      if (signal.aborted) throw new BuildError('build aborted');
      throw new BuildError(`the push stream of ${tag} broke: ${err.message}`);
    });
    if (scan.error) throw new BuildError(`the push of ${tag} to ${registry} failed: ${scan.error}`);
    log(`pushed ${tag}${scan.digest ? ` (${scan.digest})` : ''} in ${Math.round(performance.now() - started)} ms`);
  }

  /** The image's facts, pulling it from the registry when it is not on this engine. */
  async ensureImage(tag: string): Promise<ImageInfo> {
    const cached = this.images.get(tag);
    if (cached) return cached;
    let inspect = await this.inspectImage(tag);
    if (!inspect) {
      const { registry } = splitImageTag(tag);
      if (!registry) throw new ArtifactMissingError(`the image ${tag} is not on this engine`);
      await this.pull(tag);
      inspect = await this.inspectImage(tag);
      if (!inspect) throw new ArtifactMissingError(`the image ${tag} is not on this engine after a pull`);
    }
    const info = { node: inspect.Config?.Labels?.[LABEL_RUNTIME] === 'node', id: inspect.Id };
    this.images.set(tag, info);
    return info;
  }

  private async inspectImage(tag: string): Promise<Docker.ImageInspectInfo | null> {
    try {
      return await this.docker.getImage(tag).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  private async pull(tag: string): Promise<void> {
    const started = performance.now();
    let stream: Readable;
    try {
      stream = (await this.docker.pull(tag)) as Readable;
    } catch (err) {
      if (statusOf(err) === 404) throw new ArtifactMissingError(`the image ${tag} is in neither the engine nor the registry`);
      throw new Error(`pulling ${tag} failed: ${engineMessage(err)}`);
    }
    const scan = await followDockerStream(stream);
    if (scan.error) {
      if (/not found|manifest unknown/i.test(scan.error)) {
        throw new ArtifactMissingError(`the image ${tag} is in neither the engine nor the registry: ${scan.error}`);
      }
      throw new Error(`pulling ${tag} failed: ${scan.error}`);
    }
    this.opts.logger?.info('pulled a function image from the registry', { image: tag, ms: Math.round(performance.now() - started) });
  }

  private registryClient(registryInTag: string): RegistryClient {
    return new RegistryClient(registryInTag === this.registry && this.opts.registryApiUrl ? this.opts.registryApiUrl : registryInTag);
  }

  async hasArtifact(ref: ArtifactRef): Promise<boolean> {
    const tag = ref.imageTag ?? imageTagFor(this.registry, ref.functionId, ref.version);
    if (await this.inspectImage(tag)) return true;
    const { registry, repository, tag: version } = splitImageTag(tag);
    if (!registry) return false;
    return (await this.registryClient(registry).tags(repository)).includes(version);
  }

  async removeArtifact(ref: ArtifactRef): Promise<void> {
    const tag = ref.imageTag ?? imageTagFor(this.registry, ref.functionId, ref.version);
    this.images.delete(tag);
    // the registry's copy goes even when the engine refuses to let go of its own: it is what
    // every other host would pull the image back from
    let engineError: unknown = null;
    await this.removeLocalImage(tag).catch((err: unknown) => (engineError = err));
    await this.sweepBuildLeftovers(ref.functionId, ref.version);
    const { registry, repository, tag: version } = splitImageTag(tag);
    if (registry) await this.registryClient(registry).deleteTag(repository, version);
    if (engineError) throw engineError;
  }

  /**
   * Removes the untagged images an aborted or failed build of this version left (the engine keeps
   * a build's finished steps as images; cancelling the build does not remove them). Only images
   * labelled with this function and version are touched: never another build's layers. Best effort.
   */
  private async sweepBuildLeftovers(functionId: string, version: number): Promise<void> {
    try {
      const leftovers = await this.docker.listImages({
        filters: JSON.stringify({ dangling: ['true'], label: [`${LABEL_FUNCTION}=${functionId}`, `${LABEL_VERSION}=${version}`] }),
      });
      for (const image of leftovers) {
        await this.docker
          .getImage(image.Id)
          .remove()
          .catch((err: unknown) => {
            // 404: gone already; 409: a build of it is running right now
            if (statusOf(err) !== 404 && statusOf(err) !== 409) throw err;
          });
      }
    } catch (err) {
      this.opts.logger?.warn('could not remove the leftovers of a failed build', { functionId, version, error: engineMessage(err) });
    }
  }

  private async removeLocalImage(tag: string): Promise<void> {
    try {
      // force: an idle instance of a version being removed may still hold its image
      await this.docker.getImage(tag).remove({ force: true });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  async close(): Promise<void> {}
}
