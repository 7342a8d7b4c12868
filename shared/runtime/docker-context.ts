// The build context sent to the engine: the unpacked function as a tar stream, walked from disk
// (symlinks kept as symlinks, other special files skipped), plus files the platform adds.
import fs from 'node:fs';
import path from 'node:path';
import tar from 'tar-stream';
import { addTarEntry, addTarFile, type TarHeader } from './tar-entries.ts';

export interface ExtraFile {
  /** path inside the context, with forward slashes */
  path: string;
  content: Buffer;
}

export interface ContextOptions {
  /** files added by the platform; they replace any file of the same path in the directory */
  extra?: ExtraFile[];
  /** paths (relative, forward slashes) of files or directories of the directory left out */
  exclude?: string[];
}

// A fixed mtime keeps the context byte-identical for identical sources; the engine's COPY cache
// keys on content anyway.
const MTIME = new Date(0);

/**
 * Files and directories are made readable (and directories traversable) by everyone, because the
 * function runs as nobody while COPY gives everything to root; setuid/setgid bits are dropped.
 */

const fileMode = (mode: number) => (mode & 0o777) | 0o444;
const dirMode = (mode: number) => (mode & 0o777) | 0o555;

/** A readable tar stream of `dir`; a read error destroys the stream with that error. */
export function packContext(dir: string, opts: ContextOptions = {}): tar.Pack {
  const pack = tar.pack();
  const extra = opts.extra ?? [];
  const skip = new Set([...(opts.exclude ?? []), ...extra.map((f) => f.path)]);
  const extraDirs = new Set<string>();
  for (const f of extra) {
    let d = path.posix.dirname(f.path);
    while (d !== '.' && d !== '/') {
      extraDirs.add(d);
      d = path.posix.dirname(d);
    }
  }

  const addEntry = (header: TarHeader, content?: Buffer) => addTarEntry(pack, header, content);
  const addFile = (header: TarHeader, file: string) => addTarFile(pack, header, file);

  const walk = async (rel: string) => {
    const abs = rel === '' ? dir : path.join(dir, rel);
    const entries = await fs.promises.readdir(abs, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const name = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (skip.has(name)) continue;
      const full = path.join(dir, name);
      const st = await fs.promises.lstat(full);
      const base = { name, mtime: MTIME, uid: 0, gid: 0 };
      if (st.isSymbolicLink()) {
        await addEntry({ ...base, type: 'symlink', linkname: await fs.promises.readlink(full), mode: 0o777 });
      } else if (st.isDirectory()) {
        if (extraDirs.has(name)) extraDirs.delete(name);
        await addEntry({ ...base, type: 'directory', mode: dirMode(st.mode) });
        await walk(name);
      } else if (st.isFile()) {
        await addFile({ ...base, type: 'file', size: st.size, mode: fileMode(st.mode) }, full);
      }
      // sockets, fifos and devices have no place in a function
    }
  };

  (async () => {
    await walk('');
    for (const d of [...extraDirs].sort()) {
      await addEntry({ name: d, type: 'directory', mode: 0o755, mtime: MTIME, uid: 0, gid: 0 });
    }
    for (const f of extra) {
      await addEntry({ name: f.path, type: 'file', mode: 0o644, mtime: MTIME, uid: 0, gid: 0, size: f.content.length }, f.content);
    }
    pack.finalize();
  })().catch((err: Error) => pack.destroy(err));

  return pack;
}
