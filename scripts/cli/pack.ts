// Packs a function directory into a .tar.gz the same way every time: the same files give the same
// bytes, so the same sha256 (watch relies on it to skip no-op saves, and the API verifies it).
// Entries are sorted, every timestamp is fixed, owners are 0:0 with no names, modes are normalized
// to 0644 / 0755, and the gzip header carries no time and a fixed OS byte. `.git` is always left
// out; `.containerpubignore` (gitignore syntax, at the root; itself not packed) leaves out more, and
// `containerpub.json` (the function's settings, sent as its config) is not packed either.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import ignore from 'ignore';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';
import { CliError } from './errors.ts';
import { formatBytes } from './format.ts';
import { PROJECT_FILE } from './project.ts';

export const IGNORE_FILE = '.containerpubignore';
export const DEFAULT_MAX_BYTES = 50 * 1024 * 1024;
const FIXED_MTIME = new Date('2000-01-01T00:00:00Z');
/** gzip header byte 9 ("OS"): zlib writes the build platform's code; pin it to Unix (3). */
const GZIP_OS_BYTE = 9;
const GZIP_OS_UNIX = 3;

export interface IgnoreRules {
  /** `rel` is a posix path relative to the root, without a leading "./" */
  ignores(rel: string, isDirectory: boolean): boolean;
}

export interface Packed {
  buffer: Buffer;
  sha256: string;
  size: number;
  /** regular files and symlinks packed */
  files: number;
  /** every entry's path, in archive order (directories end with "/") */
  entries: string[];
  /** special files (sockets, fifos, devices) that were left out */
  skipped: string[];
}

export function loadIgnoreRules(root: string): IgnoreRules {
  let text = '';
  try {
    text = fs.readFileSync(path.join(root, IGNORE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const ig = ignore().add(text);
  return {
    ignores(rel, isDirectory) {
      if (rel === '' || rel === '.') return false;
      // client-side configuration, not part of the function's code
      if (rel === IGNORE_FILE || rel === PROJECT_FILE) return true;
      if (rel.split('/').includes('.git')) return true;
      return ig.ignores(isDirectory ? `${rel}/` : rel);
    },
  };
}

/** Throws a one-line CliError unless `dir` is an existing directory; returns its absolute path. */
export function requireDirectory(dir: string): string {
  const abs = path.resolve(dir);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CliError(`no such directory: ${dir}`);
    throw new CliError(`cannot read ${dir}: ${(err as Error).message}`);
  }
  if (!st.isDirectory()) throw new CliError(`${dir} is not a directory`);
  return abs;
}

interface Entry {
  rel: string;
  kind: 'file' | 'directory' | 'symlink';
}

const gone = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

async function collectEntries(root: string, rules: IgnoreRules): Promise<{ entries: Entry[]; skipped: string[] }> {
  const entries: Entry[] = [];
  const skipped: string[] = [];
  async function walk(relDir: string): Promise<void> {
    let dirents: fs.Dirent[];
    try {
      dirents = await fs.promises.readdir(relDir ? path.join(root, relDir) : root, { withFileTypes: true });
    } catch (err) {
      if (relDir !== '' && gone(err)) return; // removed while we walked (an editor's temp dir)
      throw err;
    }
    for (const d of dirents) {
      const rel = relDir ? `${relDir}/${d.name}` : d.name;
      if (d.isDirectory()) {
        if (rules.ignores(rel, true)) continue;
        entries.push({ rel, kind: 'directory' });
        await walk(rel);
      } else if (d.isFile() || d.isSymbolicLink()) {
        if (rules.ignores(rel, false)) continue;
        entries.push({ rel, kind: d.isFile() ? 'file' : 'symlink' });
      } else if (!rules.ignores(rel, false)) {
        skipped.push(rel);
      }
    }
  }
  await walk('');
  // Plain code-unit order, not localeCompare: the same on every machine and locale.
  entries.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return { entries, skipped };
}

type EntryHeader = Partial<Header> & { name: string };

function addEntry(tar: Pack, header: EntryHeader, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    // Once the pipeline fails (archive too large), the pack is destroyed and would never call back.
    const onClose = () => reject(new Error('archive stream closed'));
    tar.once('close', onClose);
    const done = (err?: Error | null) => {
      tar.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    if (body) tar.entry(header, body, done);
    else tar.entry(header, done);
  });
}

/**
 * Packs `dir`. Refuses (CliError) a missing or empty directory, and stops as soon as the compressed
 * archive passes `maxBytes`, so an accidental huge directory costs at most that much memory.
 */
export async function packDirectory(dir: string, opts: { maxBytes?: number } = {}): Promise<Packed> {
  const root = requireDirectory(dir);
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const rules = loadIgnoreRules(root);
  const { entries, skipped } = await collectEntries(root, rules);

  const base = { mtime: FIXED_MTIME, uid: 0, gid: 0, uname: '', gname: '' };
  const tar = tarPack();
  const gzip = createGzip({ level: 9, memLevel: 8, windowBits: 15 });
  const chunks: Buffer[] = [];
  let compressed = 0;
  // A flag, not the rejection's identity: pipeline may reject with its own AbortError instead.
  let tooLarge = false;
  const piping = pipeline(tar, gzip, async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) {
      compressed += chunk.length;
      if (compressed > maxBytes) {
        tooLarge = true;
        throw new Error('archive over the size limit');
      }
      chunks.push(chunk);
    }
  });
  const names: string[] = [];
  let files = 0;
  const producing = (async () => {
    for (const e of entries) {
      const abs = path.join(root, e.rel);
      try {
        if (e.kind === 'directory') {
          await addEntry(tar, { ...base, name: `${e.rel}/`, type: 'directory', mode: 0o755 });
          names.push(`${e.rel}/`);
          continue;
        }
        if (e.kind === 'symlink') {
          const target = await fs.promises.readlink(abs);
          await addEntry(tar, { ...base, name: e.rel, type: 'symlink', linkname: target.split(path.sep).join('/'), mode: 0o777 });
        } else {
          // Size from the bytes actually read: a file being saved right now cannot break the tar.
          const [content, st] = await Promise.all([fs.promises.readFile(abs), fs.promises.stat(abs)]);
          const mode = st.mode & 0o111 ? 0o755 : 0o644;
          await addEntry(tar, { ...base, name: e.rel, type: 'file', mode, size: content.length }, content);
        }
        names.push(e.rel);
        files++;
      } catch (err) {
        if (gone(err)) continue; // deleted between the walk and the read: it is simply not there
        throw err;
      }
    }
    tar.finalize();
  })();
  producing.catch((err) => tar.destroy(err));
  const [piped, produced] = await Promise.allSettled([piping, producing]);
  if (tooLarge) {
    throw new CliError(
      `${dir} packs to more than ${formatBytes(maxBytes)}, the size limit` +
        ` (leave files out with ${IGNORE_FILE}, or raise the limit with --max-bytes)`,
    );
  }
  if (piped.status === 'rejected') throw produced.status === 'rejected' ? produced.reason : piped.reason;
  if (produced.status === 'rejected') throw produced.reason;
  if (files === 0) {
    throw new CliError(
      `${dir} has nothing to deploy: it is empty${entries.length > 0 || fs.existsSync(path.join(root, IGNORE_FILE)) ? ' once ignored files are left out' : ''}`,
    );
  }

  const buffer = Buffer.concat(chunks);
  buffer[GZIP_OS_BYTE] = GZIP_OS_UNIX;
  const sha256 = createHash('sha256').update(buffer).digest('hex');
  return { buffer, sha256, size: buffer.length, files, entries: names, skipped };
}
