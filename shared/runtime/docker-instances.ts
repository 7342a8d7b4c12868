// Instances of the docker driver: each one a locked-down, long-lived container of the version's
// image, serving the protocol on a Unix socket in a host directory mounted at /run/containerpub.
// No network, read-only root, no capabilities, no-new-privileges, nobody, memory/CPU/pids limits.
import type Docker from 'dockerode';
import { Writable, type Readable } from 'node:stream';
import {
  InstanceLog,
  StartError,
  createInstanceDir,
  checkSocketDir,
  orphanedInstanceDirs,
  removeInstanceDir,
  socketPathFor,
} from './instance.ts';
import { currentOwner, decodeOwner, encodeOwner, ownerAlive } from '../process-owner.ts';
import { BOOTSTRAP_FILE, CONTAINER_SOCKET_DIR, SOCKET_NAME, instanceEnv, type RuntimeLogger } from './protocol.ts';
import type { InstanceBackend, InstanceExit, InstanceSpec, RunningInstance } from './types.ts';

/** Labels on every container the platform makes (images carry the first two as well). */
export const LABEL_FUNCTION = 'containerpub.function';
export const LABEL_VERSION = 'containerpub.version';
export const LABEL_INSTANCE = 'containerpub.instance';
/** host/pid/start of the platform process that started the container (see instance.ts) */
export const LABEL_OWNER = 'containerpub.owner';

export const APP_DIR = '/app';
const NOBODY = '65534:65534';

export interface ContainerLimits {
  memoryMb: number;
  /** CPU share of one instance, e.g. 1 */
  cpus: number;
  /** processes/threads one instance may have, e.g. 128 */
  pidsLimit: number;
}

/**
 * The container of one instance. One definition, used by the backend and by the bench's floor.
 * `socketDir` is the host directory mounted for the socket (null: none, for a bare run).
 */
export function instanceContainerOptions(
  image: string,
  opts: {
    /** a Node image built by the platform: run the bootstrap (custom images keep their CMD) */
    node: boolean;
    limits: ContainerLimits;
    spec: Pick<InstanceSpec, 'functionId' | 'version' | 'deploymentId' | 'instanceId' | 'env' | 'network'>;
    /** the Docker network "outbound" instances join */
    network?: string;
    socketDir: string | null;
    labels?: Record<string, string>;
  },
): Docker.ContainerCreateOptions {
  const memory = opts.limits.memoryMb * 1024 * 1024;
  const env = instanceEnv({ ...opts.spec, socketPath: `${CONTAINER_SOCKET_DIR}/${SOCKET_NAME}` });
  return {
    Image: image,
    ...(opts.node ? { Cmd: ['node', `${APP_DIR}/${BOOTSTRAP_FILE}`], WorkingDir: APP_DIR } : {}),
    // the version's variables first: the platform's CONTAINERPUB_* always win
    Env: Object.entries({ ...(opts.spec.env ?? {}), ...env }).map(([k, v]) => `${k}=${v}`),
    User: NOBODY,
    Labels: {
      [LABEL_FUNCTION]: opts.spec.functionId,
      [LABEL_VERSION]: String(opts.spec.version),
      [LABEL_INSTANCE]: opts.spec.instanceId,
      ...opts.labels,
    },
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: false,
    Tty: false,
    HostConfig: {
      NetworkMode: opts.spec.network === 'outbound' && opts.network ? opts.network : 'none',
      Memory: memory,
      MemorySwap: memory,
      NanoCpus: Math.round(opts.limits.cpus * 1e9),
      PidsLimit: opts.limits.pidsLimit,
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      Tmpfs: { '/tmp': 'rw,noexec,nosuid,size=64m' },
      // a long-lived instance that prints forever must not fill the engine's disk: the platform
      // reads the output through attach; the engine keeps 1 MB of it for `docker logs`
      LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '1' } },
      ...(opts.socketDir ? { Binds: [`${opts.socketDir}:${CONTAINER_SOCKET_DIR}:rw`] } : {}),
      AutoRemove: false,
    },
  };
}

const statusOf = (err: unknown): number | undefined => (err as { statusCode?: number } | null)?.statusCode;

export interface DockerInstancesOptions {
  docker: Docker;
  /** INSTANCE_DIR, as both this process and the engine see it */
  instanceDir: string;
  limits: Omit<ContainerLimits, 'memoryMb'>;
  /** FUNCTION_NETWORK: the network of "outbound" instances (created when missing) */
  network: string;
  /** the image's facts (pulled from the registry first when not on the engine) */
  imageInfo(tag: string): Promise<{ node: boolean; id: string }>;
  /** the image went away since imageInfo saw it (removed by hand, or by a cleanup) */
  forgetImage(tag: string): void;
  /** the image tag of a version without one recorded */
  imageTag(spec: InstanceSpec): string;
  logger?: RuntimeLogger;
}

export class DockerInstances implements InstanceBackend {
  private warnedCreate = false;

  constructor(private readonly opts: DockerInstancesOptions) {
    checkSocketDir(opts.instanceDir);
  }

  private network: Promise<void> | null = null;

  /** The "outbound" network, made on first use when the operator has not made it. */
  private ensureNetwork(): Promise<void> {
    const { docker, network } = this.opts;
    this.network ??= docker
      .getNetwork(network)
      .inspect()
      .then(
        () => undefined,
        async (err) => {
          if (statusOf(err) !== 404) throw err;
          await docker.createNetwork({ Name: network, Driver: 'bridge', Labels: { 'containerpub.network': 'functions' } }).catch((e) => {
            if (statusOf(e) !== 409) throw e; // made meanwhile by another process
          });
          this.opts.logger?.info('created the Docker network for outbound functions', { network });
        },
      );
    this.network.catch(() => (this.network = null));
    return this.network;
  }

  async start(spec: InstanceSpec): Promise<RunningInstance> {
    const { docker } = this.opts;
    if (spec.network === 'outbound') await this.ensureNetwork();
    const tag = spec.imageTag ?? this.opts.imageTag(spec);
    const dir = createInstanceDir(this.opts.instanceDir, spec.instanceId);
    const log = new InstanceLog();
    let imageId = '';
    const create = async () => {
      const image = await this.opts.imageInfo(tag);
      imageId = image.id;
      return docker.createContainer(
        instanceContainerOptions(tag, {
          node: image.node,
          limits: { ...this.opts.limits, memoryMb: spec.memoryMb },
          spec,
          network: this.opts.network,
          socketDir: dir,
          labels: { [LABEL_OWNER]: encodeOwner(currentOwner) },
        }),
      );
    };
    let container: Docker.Container;
    try {
      try {
        container = await create();
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
        // the image went away since it was last seen: look again (and pull it back if need be)
        this.opts.forgetImage(tag);
        container = await create();
      }
    } catch (err) {
      removeInstanceDir(this.opts.instanceDir, spec.instanceId);
      throw err;
    }
    const warnings = (container as unknown as { Warnings?: string[] }).Warnings;
    if (!this.warnedCreate && Array.isArray(warnings) && warnings.length > 0) {
      this.warnedCreate = true;
      this.opts.logger?.warn('the engine weakened the container limits', { warnings });
    }

    let removed: Promise<void> | null = null;
    const remove = () =>
      (removed ??= container
        .remove({ force: true })
        .then(
          () => {},
          (err: unknown) => {
            if (statusOf(err) !== 404) {
              this.opts.logger?.warn('could not remove an instance container', { container: container.id, error: String(err) });
            }
          },
        )
        .then(() => this.removeIfUntagged(imageId))
        .finally(() => removeInstanceDir(this.opts.instanceDir, spec.instanceId)));

    try {
      const stream = (await container.attach({ stream: true, stdout: true, stderr: true })) as unknown as Readable;
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          log.write(chunk);
          done();
        },
      });
      docker.modem.demuxStream(stream, sink, sink);
      stream.on('error', () => {});
      // asked for before start(): a container that exits at once would otherwise be missed
      const waited = container.wait({ condition: 'next-exit' }) as Promise<{ StatusCode: number }>;
      const exited: Promise<InstanceExit> = waited.then(
        async ({ StatusCode }) => {
          let oomKilled = false;
          if (StatusCode === 137) {
            const state = await container.inspect().then((i) => i.State, () => null);
            oomKilled = Boolean(state?.OOMKilled);
          }
          stream.destroy();
          return { code: StatusCode, oomKilled };
        },
        () => ({ code: null, oomKilled: false }),
      );
      try {
        await container.start();
      } catch (err) {
        // the engine answered: the image's command cannot run (a custom image's CMD, usually)
        stream.destroy();
        throw new StartError(`the container did not start: ${(err as { json?: { message?: string } }).json?.message ?? String(err)}`, log.text());
      }
      // a container that ends by itself is removed too
      void exited.then(() => remove());
      return {
        id: spec.instanceId,
        socketPath: socketPathFor(this.opts.instanceDir, spec.instanceId),
        exited,
        log: () => log.text(),
        kill: remove,
      };
    } catch (err) {
      await remove();
      throw err;
    }
  }

  /**
   * The version's image was removed (retention, deletion) while this instance still ran on it: the
   * engine only untagged it then. With its last container gone it can go for good.
   */
  private async removeIfUntagged(imageId: string): Promise<void> {
    if (!imageId) return;
    try {
      const image = await this.opts.docker.getImage(imageId).inspect();
      const tags = (image.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
      if (tags.length > 0 || !image.Config?.Labels?.[LABEL_FUNCTION]) return;
      await this.opts.docker.getImage(imageId).remove();
      this.opts.logger?.info('removed the untagged image of a stopped instance', { image: imageId });
    } catch {
      // 404: gone already; 409: another instance still runs on it (its own stop removes it)
    }
  }

  async sweepOrphans(): Promise<number> {
    const { docker } = this.opts;
    const containers = await docker.listContainers({ all: true, filters: JSON.stringify({ label: [LABEL_OWNER] }) });
    let swept = 0;
    for (const c of containers) {
      const owner = decodeOwner(c.Labels?.[LABEL_OWNER]);
      if (!owner || ownerAlive(owner)) continue;
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .then(() => swept++, (err: unknown) => {
          if (statusOf(err) !== 404) throw err;
        });
    }
    for (const orphan of orphanedInstanceDirs(this.opts.instanceDir)) {
      removeInstanceDir(this.opts.instanceDir, orphan.id);
    }
    if (swept > 0) this.opts.logger?.warn('removed instance containers left by a platform process that died', { count: swept });
    return swept;
  }
}
