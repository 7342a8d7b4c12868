// One image layer written from a directory, deterministically: the same files give the same bytes,
// so the same digest, whoever builds them and whenever. That is what lets the registry (and every
// engine's layer store) keep one copy of a layer many versions share, and what makes a build
// reproducible. What varies between two copies of the same files is left out of the tar:
//   - order: entries sorted by path (a directory before what it holds, names compared bytewise);
//   - time: every mtime is 0;
//   - owner: uid/gid 0, no user or group names;
//   - mode: directories 0755, files 0644, or 0755 when any execute bit was set (the function runs
//     as nobody, so everything must be readable by all; setuid/setgid/sticky bits are dropped);
//   - special files (sockets, fifos, devices) are skipped; symlinks stay symlinks.
// The tar is gzipped at a fixed level, and both digests are taken while it streams to a file: the
// blob digest (of the .tar.gz, what the registry stores) and the diff_id (of the .tar, what the
// image config lists). Memory stays bounded whatever the size of the directory.
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { addTarEntry, addTarFile } from '../tar-entries.ts';

/** A file the platform adds to the layer (path relative to the layer's prefix, forward slashes). */
export interface ExtraFile {
  path: string;
  content: Buffer;
}

export interface LayerSource {
  /** the directory whose contents go under `prefix` */
  dir: string;
  /** where they go in the image, without leading or trailing slash: 'app', 'app/node_modules' */
  prefix: string;
  /** files added by the platform; they replace any file of the same path in the directory */
  extra?: ExtraFile[];
  /** paths (relative to `dir`, forward slashes) of files or directories left out */
  exclude?: string[];
}

export interface Layer {
  /** the .tar.gz on disk */
  file: string;
  /** sha256 of the .tar.gz: the blob's digest */
  digest: string;
  /** sha256 of the uncompressed tar: the image config's diff_id */
  diffId: string;
  /** bytes of the .tar.gz */
  size: number;
  /** entries in the tar (directories, files, symlinks) */
  entries: number;
}

/** Changing it changes every digest: it is part of the layer format. */
const GZIP_LEVEL = 6;
const EPOCH = new Date(0);
const DIR_MODE = 0o755;
const FILE_MODE = 0o644;
const EXEC_MODE = 0o755;

type Entry =
  | { name: string; type: 'directory' }
  | { name: string; type: 'file'; size: number; mode: number; source: string }
  | { name: string; type: 'file'; size: number; mode: number; content: Buffer }
  | { name: string; type: 'symlink'; linkname: string };

/**
 * Compares two tar paths segment by segment, bytewise: a directory sorts right before what it
 * holds (`a`, `a/x`, `a-b`), which is the order extraction needs and `tar --sort=name` gives.
 */
export function comparePaths(a: string, b: string): number {
  const as = a.split('/');
  const bs = b.split('/');
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    const c = Buffer.compare(Buffer.from(as[i]!), Buffer.from(bs[i]!));
    if (c !== 0) return c;
  }
  return as.length - bs.length;
}

/** Every entry of the layer, sorted; files are read later, while the tar is written. */
async function listEntries(source: LayerSource): Promise<Entry[]> {
  const prefix = source.prefix.replace(/^\/+|\/+$/g, '');
  const extra = source.extra ?? [];
  const skip = new Set([...(source.exclude ?? []), ...extra.map((f) => f.path)]);
  const entries = new Map<string, Entry>();
  const addDirs = (rel: string) => {
    // the prefix's own directories, and those of extra files, whether or not the directory has them
    const parts = rel.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const name = parts.slice(0, i).join('/');
      if (!entries.has(name)) entries.set(name, { name, type: 'directory' });
    }
  };
  if (prefix !== '') addDirs(prefix);
  const inLayer = (rel: string) => (prefix === '' ? rel : `${prefix}/${rel}`);

  const walk = async (rel: string) => {
    const abs = rel === '' ? source.dir : path.join(source.dir, rel);
    for (const dirent of await fs.promises.readdir(abs, { withFileTypes: true })) {
      const relName = rel === '' ? dirent.name : `${rel}/${dirent.name}`;
      if (skip.has(relName)) continue;
      const full = path.join(source.dir, relName);
      const st = await fs.promises.lstat(full);
      const name = inLayer(relName);
      if (st.isSymbolicLink()) {
        entries.set(name, { name, type: 'symlink', linkname: await fs.promises.readlink(full) });
      } else if (st.isDirectory()) {
        entries.set(name, { name, type: 'directory' });
        await walk(relName);
      } else if (st.isFile()) {
        entries.set(name, { name, type: 'file', size: st.size, mode: st.mode & 0o111 ? EXEC_MODE : FILE_MODE, source: full });
      }
      // sockets, fifos and devices have no place in an image
    }
  };
  await walk('');

  for (const f of extra) {
    const name = inLayer(f.path);
    const parent = path.posix.dirname(name);
    if (parent !== '.') addDirs(parent);
    entries.set(name, { name, type: 'file', size: f.content.length, mode: FILE_MODE, content: f.content });
  }
  return [...entries.values()].sort((a, b) => comparePaths(a.name, b.name));
}

/** Hashes (and counts) what passes through. */
class Digesting extends Transform {
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    done(null, chunk);
  }
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/** Writes the tar entries into `pack`, reading files as it goes; finalizes it. */
async function writeEntries(pack: tar.Pack, entries: Entry[]): Promise<void> {
  const base = { mtime: EPOCH, uid: 0, gid: 0, uname: '', gname: '' };
  for (const e of entries) {
    // the pipeline was torn down (an abort, a write error): stop reading files for nothing
    if (pack.destroyed || pack.destroying) throw new Error('the layer was abandoned');
    if (e.type === 'directory') {
      await addTarEntry(pack, { ...base, name: e.name, type: 'directory', mode: DIR_MODE });
    } else if (e.type === 'symlink') {
      await addTarEntry(pack, { ...base, name: e.name, type: 'symlink', linkname: e.linkname, mode: 0o777 });
    } else if ('content' in e) {
      await addTarEntry(pack, { ...base, name: e.name, type: 'file', mode: e.mode, size: e.size }, e.content);
    } else {
      await addTarFile(pack, { ...base, name: e.name, type: 'file', mode: e.mode, size: e.size }, e.source);
    }
  }
  pack.finalize();
}

/**
 * Writes the layer of `source` to `out` (a .tar.gz), returning its digests. On failure or abort
 * the partial file is removed.
 */
export async function writeLayer(source: LayerSource, out: string, signal?: AbortSignal): Promise<Layer> {
  signal?.throwIfAborted();
  const entries = await listEntries(source);
  const pack = tar.pack();
  const tarDigest = new Digesting();
  const gzDigest = new Digesting();
  const producing = writeEntries(pack, entries).catch((err: Error) => {
    pack.destroy(err);
    throw err;
  });
  producing.catch(() => {}); // its error also reaches the pipeline through the destroyed pack
  try {
    await pipeline(pack, tarDigest, zlib.createGzip({ level: GZIP_LEVEL }), gzDigest, fs.createWriteStream(out), { signal });
    await producing;
  } catch (err) {
    pack.destroy();
    await fs.promises.rm(out, { force: true });
    throw err;
  }
  return { file: out, digest: gzDigest.digest(), diffId: tarDigest.digest(), size: gzDigest.bytes, entries: entries.length };
}
