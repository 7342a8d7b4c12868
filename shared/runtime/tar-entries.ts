// Writing entries into a tar-stream pack, for the three tars the docker driver makes (a build
// context, an image layer, a docker-load archive). Each resolves once its entry is written and
// rejects with the reason otherwise; a pack destroyed mid-entry (an abort) is reported through
// that promise, never as an unhandled 'error' event that would crash the process.
import { once } from 'node:events';
import fs from 'node:fs';
import type tar from 'tar-stream';

export type TarHeader = Partial<tar.Header> & { name: string };

/** An entry with its whole body in memory, or none (a directory, a symlink). */
export function addTarEntry(pack: tar.Pack, header: TarHeader, content?: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve());
    if (content) pack.entry(header, content, cb);
    else pack.entry(header, cb);
  });
}

/**
 * An entry whose body is streamed from `file` (memory stays bounded). `header.size` must be the
 * file's size: a file that changes size while it is read makes the entry fail, so a tar never lies.
 */
export async function addTarFile(pack: tar.Pack, header: TarHeader, file: string): Promise<void> {
  let sink!: ReturnType<tar.Pack['entry']>;
  const done = new Promise<void>((resolve, reject) => {
    sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
  });
  done.catch(() => {}); // awaited below; a read error is the one reported
  sink?.on('error', () => {}); // reported through `done`
  try {
    for await (const chunk of fs.createReadStream(file)) {
      if (!sink.write(chunk as Buffer)) await once(sink, 'drain');
    }
    sink.end(Buffer.alloc(0));
  } catch (err) {
    sink.destroy(err as Error);
    throw err;
  }
  await done;
}
