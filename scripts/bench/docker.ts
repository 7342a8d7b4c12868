// The docker driver's floors, done by hand with dockerode: the same build context and Dockerfile
// the driver generates, and the same container (image, command, limits) it creates per invocation,
// without the platform around them (no database, no HTTP, no S3).
import { randomUUID } from 'node:crypto';
import type { Duplex, Readable } from 'node:stream';
import { Writable } from 'node:stream';
import Docker from 'dockerode';
import { packContext } from '../../shared/runtime/docker-context.ts';
import { invocationContainerOptions, LABEL_FUNCTION, nodeDockerfile } from '../../shared/runtime/docker-driver.ts';
import { followDockerStream } from '../../shared/runtime/docker-stream.ts';
import { BOOTSTRAP_DIR, bootstrapFiles, encodeEvent } from '../../shared/runtime/protocol.ts';
import { pingDocker } from '../../shared/runtime/select.ts';

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
 * `docker build` of what the driver would send for a Node function in `sourceDir`: the unpacked
 * archive plus the bootstrap, built from the generated Dockerfile (FROM, LABEL, COPY). The label
 * names a function of its own, so nothing is taken from the engine's build cache.
 * `labelStep: false` builds FROM + COPY alone (a nonce file keeps the COPY out of the cache): what
 * the LABEL step costs is the difference.
 */
export async function buildByHand(
  sourceDir: string,
  opts: { baseImage: string; labelFunctionId: string; version: number; labelStep?: boolean },
): Promise<string> {
  const labelStep = opts.labelStep ?? true;
  const tag = `containerpub-bench-floor-${opts.labelFunctionId}-v${opts.version}${labelStep ? '' : '-nolabel'}:latest`;
  const dockerfile = `${BOOTSTRAP_DIR}/Dockerfile`;
  const content = labelStep
    ? nodeDockerfile(opts.baseImage, opts.labelFunctionId, opts.version)
    : `FROM ${opts.baseImage}\nCOPY . /app/\n`;
  const context = packContext(sourceDir, {
    extra: [
      ...bootstrapFiles('index.mjs'),
      { path: dockerfile, content: Buffer.from(content) },
      ...(labelStep ? [] : [{ path: `${BOOTSTRAP_DIR}/nonce`, content: Buffer.from(randomUUID()) }]),
    ],
    exclude: ['.dockerignore', BOOTSTRAP_DIR],
  });
  const stream = (await docker().buildImage(context as unknown as NodeJS.ReadableStream, {
    t: tag,
    dockerfile,
    networkmode: 'none',
    rm: true,
    forcerm: true,
  })) as Readable;
  const scan = await followDockerStream(stream);
  if (scan.error) throw new Error(`the build by hand failed: ${scan.error}`);
  return tag;
}

function sink(): Writable {
  return new Writable({ write: (_chunk, _enc, done) => done() });
}

/**
 * One invocation's container, bare: created with the driver's options (user, limits, read-only
 * root, no network), attached, started, the event written on stdin, waited for, removed.
 */
export async function runContainerBare(image: string, opts: { memoryMb: number; cpus: number; pidsLimit: number; event: unknown }): Promise<number> {
  const ids = { functionId: 'bench-floor', version: 1, deploymentId: randomUUID(), requestId: randomUUID() };
  const container = await docker().createContainer(invocationContainerOptions(image, { node: true, limits: opts, ids }));
  try {
    const stream = (await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as Duplex;
    docker().modem.demuxStream(stream, sink(), sink());
    const exited = container.wait({ condition: 'next-exit' }) as Promise<{ StatusCode: number }>;
    await container.start();
    stream.on('error', () => {});
    stream.end(encodeEvent(opts.event));
    const { StatusCode } = await exited;
    stream.destroy();
    return StatusCode;
  } finally {
    await container.remove({ force: true }).catch(() => {});
  }
}
