// The docker driver: one image per function version (pushed to the registry when one is
// configured); its instances are long-lived, locked-down containers (docker-instances.ts).
//
// Node functions are built without `docker build` (the way ko and jib build images): the
// function's files and the bootstrap become one deterministic layer (image/layer.ts), on top of the
// base image's layers and, when the build installed dependencies, a layer of node_modules cached by
// the install's key. The image config and manifest are written here (image/image-config.ts). With a
// registry they are pushed straight to it (image/push.ts), the base's layers mounted across
// repositories, never uploaded again; the engine pulls the image when an instance first starts.
// Without a registry the same image goes to the engine through `docker load` (image/load.ts).
// Dockerfile functions are built by the engine, with the build's resource limits.
import type Docker from 'dockerode';
import { newDockerClient } from './docker-client.ts';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { newBuildWorkDir } from '../work-dirs.ts';
import { packContext } from './docker-context.ts';
import { DockerInstances, LABEL_FUNCTION, LABEL_VERSION } from './docker-instances.ts';
import { checkDockerfileBases } from './dockerfile-policy.ts';
import { followDockerStream } from './docker-stream.ts';
import { allOrAbort } from './image/all-settled.ts';
import { BaseImageInRegistry, engineBaseConfig, localBaseImage, type RegistryBase } from './image/base-image.ts';
import { engineMessage, engineUnreachable, idleSignal, registryDownInEngineMessage } from './image/engine.ts';
import { imageManifest, LABEL_RUNTIME, nodeImageConfig, parseManifest, type AddedLayer, type Descriptor } from './image/image-config.ts';
import { writeLayer, type Layer } from './image/layer.ts';
import { LayerCache } from './image/layer-cache.ts';
import { loadImage } from './image/load.ts';
import { BlobNotMountableError, pushBlob, pushImage, type BlobToPush, type PushedImage } from './image/push.ts';
import { ArtifactMissingError, BOOTSTRAP_DIR, bootstrapFiles, checkEntry, type RuntimeLogger } from './protocol.ts';
import { MEDIA_TYPE, RegistryClient, splitImageTag } from './registry.ts';
import {
  BuildError,
  InfrastructureError,
  type ArtifactRef,
  type BuildInput,
  type BuildResult,
  type InstalledDependencies,
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
  /**
   * DATA_DIR: layers are written in a build work directory under DATA_DIR/builds, dependencies
   * layers cached in DATA_DIR/image-layers. Default: a directory under the OS's temp directory.
   */
  dataDir?: string;
  /** BUILD_IO_TIMEOUT_MS: one registry call, or an engine push/load that sends nothing, gives up after this long */
  ioTimeoutMs?: number;
  /** BUILD_MEMORY_MB and BUILD_CPUS: the limits of a Dockerfile build */
  buildMemoryMb?: number;
  buildCpus?: number;
  /** ALLOWED_BASE_IMAGES: what a Dockerfile may build FROM; default: the base image alone */
  allowedBaseImages?: string[];
  logger?: RuntimeLogger;
}

export { LABEL_FUNCTION, LABEL_VERSION } from './docker-instances.ts';
export { LABEL_RUNTIME } from './image/image-config.ts';

const DEFAULT_IO_TIMEOUT_MS = 30_000;
/** Layers live under /app: the function's files, and node_modules beside them. */
const APP_PREFIX = 'app';

/** The image of one function version: `[registry/]function-<id>-v<n>:latest`. */
export function imageTagFor(registry: string | null | undefined, functionId: string, version: number): string {
  return `${registry ? registry + '/' : ''}function-${functionId}-v${version}:latest`;
}

interface ImageInfo {
  /** a Node image built by the platform: run the bootstrap */
  node: boolean;
  /** the image's id (what a container of it keeps using when the tag is removed) */
  id: string;
}

const statusOf = (err: unknown): number | undefined => (err as { statusCode?: number } | null)?.statusCode;
const ms = (since: number) => `${Math.round(performance.now() - since)} ms`;
const short = (digest: string) => digest.slice(0, 'sha256:'.length + 12);

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const layerDescriptor = (layer: Layer): Descriptor => ({ mediaType: MEDIA_TYPE.dockerLayer, size: layer.size, digest: layer.digest });

/** The engine is unreachable: the queue waits it out. Anything else the caller names. */
function engineFault(err: unknown, otherwise: (message: string) => Error): Error {
  if (engineUnreachable(err)) return new InfrastructureError('engine', `the Docker engine did not answer: ${engineMessage(err)}`, { cause: err });
  return otherwise(engineMessage(err));
}

export class DockerDriver implements RuntimeDriver {
  readonly name = 'docker' as const;
  readonly docker: Docker;
  private readonly registry: string | undefined;
  private readonly images = new Map<string, ImageInfo>();
  readonly instances: InstanceBackend;
  private readonly ioTimeoutMs: number;
  private readonly dataDir: string;
  private readonly client: RegistryClient | null;
  private readonly base: BaseImageInRegistry | null;
  private readonly dependencyLayers: LayerCache;
  /** a repository each dependencies layer was last pushed to: the next image mounts it from there */
  private readonly layerHomes = new Map<string, string>();

  constructor(private readonly opts: DockerDriverOptions) {
    this.docker = opts.docker ?? newDockerClient();
    this.registry = opts.registry?.trim() || undefined;
    this.ioTimeoutMs = opts.ioTimeoutMs ?? DEFAULT_IO_TIMEOUT_MS;
    this.dataDir = opts.dataDir ?? path.join(os.tmpdir(), 'containerpub-docker');
    this.dependencyLayers = new LayerCache(path.join(this.dataDir, 'image-layers'));
    this.client = this.registry ? this.registryClient(this.registry) : null;
    this.base =
      this.registry && this.client
        ? new BaseImageInRegistry({
            docker: this.docker,
            baseImage: opts.baseImage,
            registry: this.registry,
            client: this.client,
            idleTimeoutMs: this.ioTimeoutMs,
          })
        : null;
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
      `Node images ${this.registry ? 'pushed to the registry' : 'loaded into the engine'} without docker build, ` +
      `${this.opts.cpus} CPU, ${this.opts.pidsLimit} pids per instance, no network)`;
  }

  async build(input: BuildInput): Promise<BuildResult> {
    const tag = imageTagFor(this.registry, input.functionId, input.version);
    const { signal } = input;
    const aborted = () => new BuildError('build aborted');
    if (signal.aborted) throw aborted();
    try {
      if (input.function.kind === 'node') return await this.buildNode(input, input.function.entry, tag);
      return await this.buildDockerfile(input, tag);
    } catch (err) {
      if (signal.aborted) throw aborted();
      throw err;
    }
  }

  /**
   * A Node function's image, written here: layers, config, manifest; then pushed to the registry,
   * or loaded into the engine when there is none.
   */
  private async buildNode(input: BuildInput, handler: string, tag: string): Promise<BuildResult> {
    const { signal, log } = input;
    const entry = await checkEntry(input.sourceDir, handler);
    const started = performance.now();
    log(`building ${tag} (node, entry ${entry}) without docker build: ${this.registry ? 'pushed to the registry' : 'docker load'}`);
    const work = newBuildWorkDir(this.dataDir, input.deploymentId);
    await fs.promises.mkdir(work, { recursive: true });
    try {
      const [base, dependencies, files] = await allOrAbort(signal, [
        async (s: AbortSignal) => {
          const t = performance.now();
          const b = this.base ? await this.base.resolve(s, log) : null;
          return { registry: b, ms: ms(t) };
        },
        (s: AbortSignal) => (input.dependencies ? this.dependenciesLayer(input.dependencies, s) : Promise.resolve(null)),
        async (s: AbortSignal) => {
          const t = performance.now();
          const layer = await writeLayer(
            {
              dir: input.sourceDir,
              prefix: APP_PREFIX,
              extra: bootstrapFiles(entry),
              // .containerpub/ is the platform's, and the platform decides what reaches /app: the
              // user's .dockerignore has no say; installed dependencies have their own layer
              exclude: ['.dockerignore', BOOTSTRAP_DIR, ...(input.dependencies ? ['node_modules'] : [])],
            },
            path.join(work, 'function.tar.gz'),
            s,
          );
          return { layer, ms: ms(t) };
        },
      ] as const);
      if (dependencies) {
        const d = dependencies.layer;
        log(
          `dependencies layer ${d.digest} (${formatBytes(d.size)}, ${d.entries} entries): ` +
            (dependencies.cached ? `from the cache (key ${input.dependencies!.key.slice(0, 12)})` : `written in ${dependencies.ms} and cached`),
        );
      }
      log(`function layer ${files.layer.digest} (${formatBytes(files.layer.size)}, ${files.layer.entries} entries) written in ${files.ms}`);

      const added: { layer: Layer; history: AddedLayer; what: string }[] = [];
      if (dependencies) {
        added.push({
          layer: dependencies.layer,
          what: 'dependencies layer',
          history: { diffId: dependencies.layer.diffId, createdBy: `containerpub: /app/node_modules (npm ci, key ${input.dependencies!.key.slice(0, 12)})` },
        });
      }
      added.push({ layer: files.layer, what: 'function layer', history: { diffId: files.layer.diffId, createdBy: `containerpub: /app (function files and bootstrap, entry ${entry})` } });
      const labels = { functionId: input.functionId, version: input.version };

      if (base.registry) {
        log(`base image ${this.registry}/${base.registry.repository}:${base.registry.tag}, ${base.registry.layers.length} layer(s), ready in ${base.ms}`);
        await this.pushNodeImage(tag, base.registry, added, labels, input);
        log(`image ${tag} in the registry ${ms(started)} after the build began`);
      } else {
        const inspect = await localBaseImage(this.docker, this.opts.baseImage);
        const config = nodeImageConfig(engineBaseConfig(inspect, this.opts.baseImage), added.map((a) => a.history), labels);
        const t = performance.now();
        await loadImage(
          this.docker,
          {
            tag,
            config,
            layers: [...(inspect.RootFS?.Layers ?? []).map((diffId) => ({ diffId })), ...added.map((a) => ({ diffId: a.layer.diffId, file: a.layer.file }))],
          },
          { signal, idleTimeoutMs: this.ioTimeoutMs },
        );
        const loaded = await this.inspectImage(tag);
        if (loaded?.Id !== config.digest) {
          throw new Error(`docker load reported success but ${tag} is ${loaded ? `the image ${loaded.Id}, not ${config.digest}` : 'not there'}`);
        }
        this.images.set(tag, { node: true, id: config.digest });
        log(`loaded ${tag} (image ${config.digest}) into the engine in ${ms(t)}; ${ms(started)} after the build began`);
      }
      return { imageTag: tag };
    } finally {
      await fs.promises.rm(work, { recursive: true, force: true }).catch(() => {});
    }
  }

  /** The dependencies layer: from the cache when an earlier build made it with the same key. */
  private async dependenciesLayer(deps: InstalledDependencies, signal: AbortSignal): Promise<{ layer: Layer; cached: boolean; ms: string }> {
    const t = performance.now();
    const got = await this.dependencyLayers.get(deps.key, (out) =>
      writeLayer({ dir: deps.nodeModulesDir, prefix: `${APP_PREFIX}/node_modules` }, out, signal),
    );
    return { ...got, ms: ms(t) };
  }

  /**
   * Pushes the image: the base's layers mounted from the base's repository, the new layers and the
   * config uploaded (or mounted, or found there already), then the manifest under the version's tag.
   * When the base's layers turn out to be gone from the registry, the base is looked up (and pushed)
   * again, once.
   */
  private async pushNodeImage(
    tag: string,
    base: RegistryBase,
    added: { layer: Layer; history: AddedLayer; what: string }[],
    labels: { functionId: string; version: number },
    input: BuildInput,
  ): Promise<void> {
    const { repository, tag: reference } = splitImageTag(tag);
    for (let attempt = 1; ; attempt++) {
      const config = nodeImageConfig(base.config, added.map((a) => a.history), labels);
      const configDescriptor: Descriptor = { mediaType: MEDIA_TYPE.dockerConfig, size: config.bytes.length, digest: config.digest };
      const manifest = imageManifest(configDescriptor, [...base.layers, ...added.map((a) => layerDescriptor(a.layer))]);
      const blobs: BlobToPush[] = [
        ...base.layers.map((d) => ({ descriptor: d, what: 'base layer', mountFrom: base.repository })),
        ...added.map((a) => ({
          descriptor: layerDescriptor(a.layer),
          what: a.what,
          body: { file: a.layer.file, size: a.layer.size },
          mountFrom: this.layerHomes.get(a.layer.digest),
        })),
        { descriptor: configDescriptor, what: 'config', body: { bytes: config.bytes } },
      ];
      const t = performance.now();
      let pushed: PushedImage;
      try {
        pushed = await pushImage(this.client!, repository, reference, { blobs, manifest }, { signal: input.signal });
      } catch (err) {
        if (err instanceof BlobNotMountableError && attempt === 1 && err.from === base.repository) {
          input.log(`${err.message}: looking the base image up again`);
          this.base!.forget(base.imageId);
          base = await this.base!.resolve(input.signal, input.log);
          continue;
        }
        throw err;
      }
      for (const { blob, outcome } of pushed.outcomes) {
        const how = outcome === 'mounted' ? `mounted from ${blob.mountFrom}` : outcome === 'present' ? 'already there' : 'uploaded';
        input.log(`  ${blob.what} ${short(blob.descriptor.digest)} (${formatBytes(blob.descriptor.size)}): ${how}`);
        if (blob.what === 'dependencies layer') this.layerHomes.set(blob.descriptor.digest, repository);
      }
      input.log(`pushed ${tag} (manifest ${pushed.digest}) in ${ms(t)}`);
      return;
    }
  }

  /** A Dockerfile function: built by the engine, within the build limits, then pushed by it. */
  private async buildDockerfile(input: BuildInput, tag: string): Promise<BuildResult> {
    const { signal } = input;
    const aborted = () => new BuildError('build aborted');
    // a tenant's Dockerfile may build only from the allowed images: refused before anything is built
    const allowed = this.opts.allowedBaseImages?.length ? this.opts.allowedBaseImages : [this.opts.baseImage];
    await checkDockerfileBases(input.sourceDir, allowed);
    // an earlier attempt at this version (aborted, or failed mid-way) may have left layers
    await this.sweepBuildLeftovers(input.functionId, input.version);
    const context = packContext(input.sourceDir);

    const started = performance.now();
    input.log(`building ${tag} (custom Dockerfile)`);
    let built = false;
    try {
      const memory = (this.opts.buildMemoryMb ?? 2048) * 1024 * 1024;
      const cpuPeriod = 100_000;
      const buildOptions: Record<string, unknown> = {
        t: tag,
        networkmode: 'none',
        rm: true,
        forcerm: true,
        abortSignal: signal,
        // labels through the build's own option rather than a LABEL line of ours in the tenant's
        // Dockerfile: the engine applies them to the image it tags
        labels: { [LABEL_FUNCTION]: input.functionId, [LABEL_VERSION]: String(input.version) },
        // every RUN step runs within these limits (memswap = memory: no swap on top)
        memory,
        memswap: memory,
        cpuperiod: cpuPeriod,
        cpuquota: Math.round((this.opts.buildCpus ?? 1) * cpuPeriod),
      };
      let stream: Readable;
      try {
        stream = (await this.docker.buildImage(context as unknown as NodeJS.ReadableStream, buildOptions)) as Readable;
      } catch (err) {
        context.destroy();
        if (signal.aborted) throw aborted();
        throw engineFault(err, (m) => new BuildError(`the engine refused the build: ${m}`));
      }
      let scan;
      try {
        scan = await followDockerStream(stream, { onLine: (line) => input.log(line), signal });
      } catch (err) {
        context.destroy();
        if (signal.aborted) throw aborted();
        throw new InfrastructureError('engine', `the build stream broke: ${(err as Error).message}`, { cause: err });
      }
      // the engine reports a failed step inside a stream that ends normally
      if (scan.error) throw new BuildError(`the build failed: ${scan.error}`);
      let imageId: string;
      try {
        imageId = (await this.docker.getImage(tag).inspect()).Id;
      } catch (err) {
        throw engineFault(err, (m) => new Error(`the build reported success but ${tag} is not there: ${m}`));
      }
      built = true; // this build made the image: a later failure (the push) removes it
      input.log(`built ${tag} in ${ms(started)}`);

      if (this.registry) {
        if (signal.aborted) throw aborted();
        await this.push(tag, input.log, signal);
      }
      this.images.set(tag, { node: false, id: imageId });
      return { imageTag: tag };
    } catch (err) {
      if (built) await this.removeLocalImage(tag).catch(() => {});
      await this.sweepBuildLeftovers(input.functionId, input.version);
      throw err;
    }
  }

  /**
   * A configuration change: version `to` gets the image of `from` as its own. With a registry the
   * manifest is copied into the new version's repository (its blobs mounted, nothing uploaded, no
   * engine work); without one the engine tags the image.
   */
  async cloneArtifact(from: ArtifactRef, to: { functionId: string; version: number }, log: (line: string) => void): Promise<BuildResult> {
    const source = from.imageTag ?? imageTagFor(this.registry, from.functionId, from.version);
    const tag = imageTagFor(this.registry, to.functionId, to.version);
    const src = splitImageTag(source);
    if (this.registry && src.registry === this.registry) {
      await this.copyManifest(source, tag, log);
      return { imageTag: tag };
    }
    const info = await this.ensureImage(source); // pulled when another host built it
    const { registry, repository, tag: version } = splitImageTag(tag);
    try {
      await this.docker.getImage(source).tag({ repo: registry ? `${registry}/${repository}` : repository, tag: version });
    } catch (err) {
      throw engineFault(err, (m) => new BuildError(`tagging ${source} as ${tag} failed: ${m}`));
    }
    log(`tagged ${source} as ${tag} (the same image: no build)`);
    // its own repository in the registry: removing one version's image never touches the other's
    if (this.registry) await this.push(tag, log, new AbortController().signal);
    this.images.set(tag, info);
    return { imageTag: tag };
  }

  private async copyManifest(source: string, tag: string, log: (line: string) => void): Promise<void> {
    const started = performance.now();
    const src = splitImageTag(source);
    const dst = splitImageTag(tag);
    const client = this.client!;
    const manifest = await client.getManifest(src.repository, src.tag);
    if (!manifest) throw new ArtifactMissingError(`the image ${source} is not in the registry`);
    const parsed = parseManifest(manifest, `the image ${source}`);
    try {
      for (const descriptor of [parsed.config, ...parsed.layers]) {
        await pushBlob(client, dst.repository, { descriptor, what: 'blob', mountFrom: src.repository });
      }
    } catch (err) {
      if (err instanceof BlobNotMountableError) throw new ArtifactMissingError(`the image ${source} is incomplete in the registry: ${err.message}`);
      throw err;
    }
    // the same bytes: the same manifest digest, so the same image wherever it is pulled
    const digest = await client.putManifest(dst.repository, dst.tag, manifest);
    log(`tagged ${source} as ${tag} in the registry (manifest ${digest} copied, ${parsed.layers.length + 1} blobs mounted) in ${ms(started)}: no build`);
  }

  private async push(tag: string, log: (line: string) => void, signal: AbortSignal): Promise<void> {
    const started = performance.now();
    const { registry, repository, tag: version } = splitImageTag(tag);
    let stream: Readable;
    try {
      stream = (await this.docker.getImage(`${registry}/${repository}`).push({ tag: version, abortSignal: signal })) as Readable;
    } catch (err) {
      if (signal.aborted) throw new BuildError('build aborted');
      throw engineFault(err, (m) => new Error(`the push of ${tag} was refused: ${m}`));
    }
    // push progress is mostly per-layer noise: only the outcome goes to the build log
    const idle = idleSignal(stream, this.ioTimeoutMs, signal);
    let scan;
    try {
      scan = await followDockerStream(stream, { signal: idle.signal }).catch((err: Error) => {
        if (signal.aborted) throw new BuildError('build aborted');
        throw new InfrastructureError('registry', `the push stream of ${tag} broke: ${err.message}`, { cause: err });
      });
    } finally {
      idle.stop();
    }
    if (scan.error) {
      const message = `the push of ${tag} to ${registry} failed: ${scan.error}`;
      throw registryDownInEngineMessage(scan.error) ? new InfrastructureError('registry', message) : new Error(message);
    }
    log(`pushed ${tag}${scan.digest ? ` (${scan.digest})` : ''} in ${ms(started)}`);
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
    if (registryInTag === this.registry && this.client) return this.client;
    return new RegistryClient(registryInTag === this.registry && this.opts.registryApiUrl ? this.opts.registryApiUrl : registryInTag, {
      timeoutMs: this.ioTimeoutMs,
    });
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
