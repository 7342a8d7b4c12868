// Without a registry, the same image is handed to the engine with `docker load`: a docker-save style
// tar of manifest.json, the config and the new layers. The base's layers are listed in manifest.json
// but not sent: the engine finds a layer it already has by its chain id before it looks for the
// file (moby image/tarexport/load.go), and the base is on the engine by definition. The engine takes
// a gzipped layer file as well as a plain one.
import type Docker from 'dockerode';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { addTarEntry, addTarFile } from '../tar-entries.ts';
import { followDockerStream } from '../docker-stream.ts';
import { InfrastructureError } from '../types.ts';
import { engineMessage, engineUnreachable, idleSignal } from './engine.ts';
import type { Document } from './image-config.ts';

export interface LoadLayer {
  diffId: string;
  /** the .tar.gz; absent for a layer the engine has (the base's) */
  file?: string;
}

const hex = (digest: string) => digest.replace(/^sha256:/, '');
const EPOCH = new Date(0);

/** The docker-save archive, streamed: layer files are read from disk as the engine takes them. */
function saveArchive(tag: string, config: Document, layers: LoadLayer[]): tar.Pack {
  const pack = tar.pack();
  const header = (name: string, size: number) => ({ name, size, mode: 0o644, mtime: EPOCH, uid: 0, gid: 0, type: 'file' as const });
  const add = (name: string, content: Buffer) => addTarEntry(pack, header(name, content.length), content);
  (async () => {
    for (const layer of layers) {
      if (!layer.file) continue;
      const { size } = await fs.promises.stat(layer.file);
      await addTarFile(pack, header(`${hex(layer.diffId)}/layer.tar`, size), layer.file);
    }
    await add(`${hex(config.digest)}.json`, config.bytes);
    const manifest = [{ Config: `${hex(config.digest)}.json`, RepoTags: [tag], Layers: layers.map((l) => `${hex(l.diffId)}/layer.tar`) }];
    await add('manifest.json', Buffer.from(JSON.stringify(manifest)));
    pack.finalize();
  })().catch((err: Error) => pack.destroy(err));
  return pack;
}

/** Loads the image into the engine under `tag`. */
export async function loadImage(
  docker: Docker,
  image: { tag: string; config: Document; layers: LoadLayer[] },
  opts: { signal: AbortSignal; idleTimeoutMs: number },
): Promise<void> {
  const archive = saveArchive(image.tag, image.config, image.layers);
  let stream: Readable;
  try {
    stream = (await docker.loadImage(archive as unknown as NodeJS.ReadableStream, { quiet: true, abortSignal: opts.signal } as object)) as Readable;
  } catch (err) {
    archive.destroy();
    if (opts.signal.aborted) throw opts.signal.reason;
    if (engineUnreachable(err)) throw new InfrastructureError('engine', `the Docker engine did not answer: ${engineMessage(err)}`, { cause: err });
    throw new Error(`docker load of ${image.tag} was refused: ${engineMessage(err)}`);
  }
  const idle = idleSignal(stream, opts.idleTimeoutMs, opts.signal);
  try {
    const scan = await followDockerStream(stream, { signal: idle.signal }).catch((err: Error) => {
      if (opts.signal.aborted) throw opts.signal.reason;
      throw new InfrastructureError('engine', `docker load of ${image.tag} broke: ${err.message}`, { cause: err });
    });
    if (scan.error) throw new Error(`docker load of ${image.tag} failed: ${scan.error}`);
  } finally {
    idle.stop();
    archive.destroy();
  }
}
