// The docker driver's floors, done by hand with dockerode: the same build context and Dockerfile
// the driver generates, and the same container (image, command, limits, socket mount) it creates
// per instance, without the platform around them (no database, no HTTP, no S3).
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import { packContext } from '../../shared/runtime/docker-context.ts';
import { LABEL_FUNCTION } from '../../shared/runtime/docker-driver.ts';
import { instanceContainerOptions, type ContainerLimits } from '../../shared/runtime/docker-instances.ts';
import { followDockerStream } from '../../shared/runtime/docker-stream.ts';
import { BOOTSTRAP_DIR, SOCKET_NAME, bootstrapFiles } from '../../shared/runtime/protocol.ts';
import { pingDocker } from '../../shared/runtime/select.ts';
import { bareSocketDir, readyThenInvoke } from './instance-floor.ts';

let engine: Docker | undefined;
export const docker = () => (engine ??= new Docker());

/** null when the engine answers and has the base image, else why not. */
export async function dockerUnavailable(baseImage: string): Promise<string | null> {
  const why = await pingDocker(docker());
  if (why) return `the Docker engine does not answer (${why})`;
  try {
    await docker().getImage(baseImage).inspect();
  } catch {
    return `the base image ${baseImage} is not on the engine`;
  }
  return null;
}

/** Removes every image labelled as one of these functions' (what the bench built). */
export async function removeFunctionImages(functionIds: string[]): Promise<void> {
  for (const id of functionIds) {
    const images = await docker().listImages({ all: true, filters: JSON.stringify({ label: [`${LABEL_FUNCTION}=${id}`] }) });
    for (const image of images) {
      await docker().getImage(image.Id).remove({ force: true }).catch(() => {});
    }
  }
}

/**
 * `docker build` by hand of a Node function in `sourceDir`: FROM the base image + COPY of the
 * unpacked archive and the bootstrap, as a person would write it. A fresh nonce file keeps the
 * COPY out of the engine's build cache, so every sample is a real build.
 */
export async function buildByHand(sourceDir: string, opts: { baseImage: string; tag: string }): Promise<string> {
  const dockerfile = `${BOOTSTRAP_DIR}/Dockerfile`;
  const context = packContext(sourceDir, {
    extra: [
      ...bootstrapFiles('index.mjs'),
      { path: dockerfile, content: Buffer.from(`FROM ${opts.baseImage}\nCOPY . /app/\n`) },
      { path: `${BOOTSTRAP_DIR}/nonce`, content: Buffer.from(randomUUID()) },
    ],
    exclude: ['.dockerignore', BOOTSTRAP_DIR],
  });
  const stream = (await docker().buildImage(context as unknown as NodeJS.ReadableStream, {
    t: opts.tag,
    dockerfile,
    networkmode: 'none',
    rm: true,
    forcerm: true,
  })) as Readable;
  const scan = await followDockerStream(stream);
  if (scan.error) throw new Error(`the build by hand failed: ${scan.error}`);
  return opts.tag;
}

/** `docker push` by hand of `tag` (registry/repository:tag), to the end of the engine's stream. */
export async function pushByHand(tag: string): Promise<void> {
  const colon = tag.lastIndexOf(':');
  const stream = (await docker().getImage(tag.slice(0, colon)).push({ tag: tag.slice(colon + 1) })) as Readable;
  const scan = await followDockerStream(stream);
  if (scan.error) throw new Error(`the push by hand of ${tag} failed: ${scan.error}`);
}

/**
 * The docker driver's cold start, bare: the same container as an instance (instanceContainerOptions,
 * the one definition: user, limits, read-only root, no network, the socket directory mounted),
 * created and started with dockerode, polled until `GET /ready` answers, then sent one invocation.
 * Returns the ms from create to that answer; the container is removed afterwards (not timed).
 */
export async function bareContainerColdStart(image: string, opts: { limits: ContainerLimits; body: string }): Promise<number> {
  const socketDir = bareSocketDir();
  const spec = { functionId: `bench-floor-${randomUUID()}`, version: 1, deploymentId: randomUUID(), instanceId: `floor-${randomUUID().slice(0, 8)}` };
  let container: Docker.Container | undefined;
  let why: string | null = null;
  try {
    const t0 = performance.now();
    container = await docker().createContainer(instanceContainerOptions(image, { node: true, limits: opts.limits, spec, socketDir }));
    await container.start();
    const c = container;
    // no wait() or attach(): the floor makes only the calls a start needs. A container that died
    // is noticed by an inspect every 500 polls (~0.5 s): a broken one fails fast enough, and a good
    // one, ready in well under that, is not slowed by extra engine calls.
    let polls = 0;
    const gone = () => {
      if (++polls % 500 === 0) {
        void c.inspect().then(
          (info) => {
            if (!info.State.Running) why = `the container is ${info.State.Status} (exit code ${info.State.ExitCode})`;
          },
          () => {},
        );
      }
      return why;
    };
    await readyThenInvoke(path.join(socketDir, SOCKET_NAME), opts.body, gone);
    return performance.now() - t0;
  } finally {
    await container?.remove({ force: true }).catch(() => {});
    fs.rmSync(socketDir, { recursive: true, force: true });
  }
}
