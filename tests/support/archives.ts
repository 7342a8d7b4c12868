// Function archives built in memory for tests: valid ones, and the malformed or hostile ones the
// extractor must refuse. Deterministic (fixed mtime, owner 0:0), so equal inputs give equal bytes.
import { pipeline, Readable } from 'node:stream';
import { createGzip, gzipSync } from 'node:zlib';
import { pack, type Header } from 'tar-stream';

export interface TarEntry {
  name: string;
  content?: string | Buffer;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device' | 'block-device';
  /** target of a symlink or hard link */
  linkname?: string;
  mode?: number;
  /** overrides the size declared in the header (the content is still written as given): a lying header */
  size?: number;
}

const MTIME = new Date('2024-01-01T00:00:00Z');
const BLOCK = 512;

/** An uncompressed tar. */
export async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const tar = pack();
  const collected = collect(tar);
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const header: Partial<Header> & { name: string } = {
      name: entry.name,
      type,
      mode: entry.mode,
      mtime: MTIME,
      uid: 0,
      gid: 0,
      uname: '',
      gname: '',
      linkname: entry.linkname,
    };
    await new Promise<void>((resolve, reject) => {
      const callback = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') tar.entry(header, Buffer.from(entry.content ?? ''), callback);
      else tar.entry(header, callback);
    });
  }
  tar.finalize();
  const buffer = await collected;
  entries.forEach((entry, index) => {
    if (entry.size !== undefined) declareSize(buffer, index, entry.size);
  });
  return buffer;
}

export async function makeTarGz(entries: TarEntry[]): Promise<Buffer> {
  return gzipSync(await makeTar(entries));
}

/** A valid Node function: package.json ("main": "index.mjs", ESM), index.mjs = source, plus `extra` files. */
export async function makeNodeFunction(source: string, extra: Record<string, string> = {}): Promise<Buffer> {
  return makeTarGz([
    { name: 'package.json', content: JSON.stringify({ name: 'fn', main: 'index.mjs', type: 'module' }) },
    { name: 'index.mjs', content: source },
    ...Object.entries(extra).map(([name, content]) => ({ name, content })),
  ]);
}

/**
 * A .tar.gz holding one file of `size` zero bytes, generated and compressed as it is read, so a
 * gzip bomb of any size costs no memory. `produced` is told how many tar bytes were generated so
 * far, to check that a consumer stopped early.
 */
export function zeroFileTarGzStream(
  size: number,
  opts: { name?: string; produced?: (tarBytes: number) => void } = {},
): Readable {
  async function* tarBytes(): AsyncGenerator<Buffer> {
    const header = (await makeTar([{ name: opts.name ?? 'zeros.bin', content: '', size }])).subarray(0, BLOCK);
    let total = 0;
    const emit = (chunk: Buffer) => {
      total += chunk.length;
      opts.produced?.(total);
      return chunk;
    };
    yield emit(header);
    const zeros = Buffer.alloc(1024 * 1024);
    for (let left = size; left > 0; left -= zeros.length) yield emit(left >= zeros.length ? zeros : zeros.subarray(0, left));
    yield emit(Buffer.alloc(padding(size) + 2 * BLOCK)); // pad the last block, then the end-of-archive blocks
  }
  const gzip = createGzip({ level: 1 });
  // The consumer is expected to give up half-way: the premature close that follows is not an error here.
  pipeline(Readable.from(tarBytes()), gzip, () => {});
  return gzip;
}

/** Rewrites the size field of the `index`-th entry's header (pax headers skipped) and its checksum. */
function declareSize(tar: Buffer, index: number, size: number): void {
  if (!Number.isInteger(size) || size < 0 || size > 0o77777777777) throw new Error(`size ${size} does not fit a ustar header`);
  let seen = 0;
  for (let offset = 0; offset + BLOCK <= tar.length; ) {
    const header = tar.subarray(offset, offset + BLOCK);
    if (header.every((byte) => byte === 0)) break;
    const typeflag = String.fromCharCode(header[156]);
    const stored = parseInt(header.toString('ascii', 124, 136).replace(/\0.*$/, '').trim() || '0', 8);
    const isEntry = !['x', 'g', 'L', 'K'].includes(typeflag);
    if (isEntry && seen++ === index) {
      header.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 12, 'ascii');
      header.fill(' ', 148, 156);
      const sum = header.reduce((acc, byte) => acc + byte, 0);
      header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
      return;
    }
    offset += BLOCK + stored + padding(stored);
  }
  throw new Error(`tar has no entry #${index}`);
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
