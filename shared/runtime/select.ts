// Picks the runtime driver at start: docker when asked for (or, with 'auto', when the engine
// answers), the process driver otherwise. 'auto' falls back to the process driver (no isolation at
// all) only while the API listens on a loopback address: on a reachable address a Docker engine
// that happens to be down must not quietly turn the platform into one that runs untrusted code
// unsandboxed.
import type Docker from 'dockerode';
import { newDockerClient } from './docker-client.ts';
import { ConfigError } from '../config.ts';
import { DockerDriver, type DockerDriverOptions } from './docker-driver.ts';
import { ProcessDriver, type ProcessDriverOptions } from './process-driver.ts';
import type { RuntimeDriver } from './types.ts';

const PING_TIMEOUT_MS = 1_500;

/** null when the engine answered within the timeout, else why not. */
export async function pingDocker(docker: Docker, timeoutMs = PING_TIMEOUT_MS): Promise<string | null> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    // @types/dockerode lacks ping's options; dockerode 5 passes abortSignal to the request
    await (docker.ping as unknown as (opts: { abortSignal: AbortSignal }) => Promise<unknown>).call(docker, { abortSignal: signal });
    return null;
  } catch (err) {
    return signal.aborted ? `no answer within ${timeoutMs} ms` : (err as Error).message;
  }
}

/** Whether `host` (HOST) is reachable from this machine only: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice('::ffff:'.length) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

export async function selectDriver(opts: {
  driver: 'docker' | 'process' | 'auto';
  /** the API's listen address (HOST): 'auto' may fall back to the process driver only on loopback */
  listenHost: string;
  docker: DockerDriverOptions;
  process: ProcessDriverOptions;
}): Promise<RuntimeDriver> {
  const logger = opts.docker.logger ?? opts.process.logger;
  if (opts.driver === 'process') return new ProcessDriver(opts.process);

  const docker = opts.docker.docker ?? newDockerClient();
  const why = await pingDocker(docker);
  if (why === null) {
    const driver = new DockerDriver({ ...opts.docker, docker });
    const base = await docker
      .getImage(opts.docker.baseImage)
      .inspect()
      .then(() => true, () => false);
    if (!base) {
      logger?.warn('the base image for Node functions is not on the engine: builds will fail until it is', {
        baseImage: opts.docker.baseImage,
      });
    }
    logger?.info('runtime driver: docker', { detail: driver.describe() });
    return driver;
  }
  if (opts.driver === 'docker') {
    throw new Error(`RUNTIME_DRIVER=docker but the Docker engine did not answer: ${why}`);
  }
  if (!isLoopbackHost(opts.listenHost)) {
    throw new ConfigError(
      `RUNTIME_DRIVER=auto found no Docker engine (${why}) and HOST=${opts.listenHost} is not a loopback address: ` +
        'refusing to fall back to the process driver, which runs functions without any isolation. ' +
        'Start the Docker engine, or set RUNTIME_DRIVER=process to opt in explicitly (development only).',
    );
  }
  logger?.warn('the Docker engine did not answer: falling back to the process driver (HOST is loopback)', { reason: why });
  // the ProcessDriver constructor logs PROCESS_DRIVER_WARNING through its logger
  return new ProcessDriver(opts.process);
}
