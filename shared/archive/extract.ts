// Unpacks a function archive (.tar.gz) while validating it, straight from the download stream: a bad
// archive is refused with one line a user can act on, before anything is built, and a hostile one
// (path traversal, links out of the tree, device files, gzip bombs) never touches anything outside
// destDir nor fills the disk.
import { constants as fsConstants } from 'node:fs';
import { chmod, link, lstat, mkdir, open, readdir, readlink, symlink } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type ExtractEvents, type Header } from 'tar-stream';

/** A refused archive. The message is shown to the user in the build log: one line, specific. */
export class ArchiveError extends Error {
  override name = 'ArchiveError';
}

export interface ExtractLimits {
  maxEntries: number;
  /** every byte of entry data counts, whether it is written to disk or not */
  maxUnpackedBytes: number;
}

export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = { maxEntries: 5000, maxUnpackedBytes: 250 * 1024 * 1024 };

// Headers, pax records, block padding and the end-of-archive record, beyond the entries' data: a
// real archive needs far less. Without a cap on the whole tar stream, a gzip of gigabytes of zero
// blocks after the last entry would be inflated to the end (CPU, not disk, but minutes of it).
const TAR_OVERHEAD_PER_ENTRY = 4 * 1024;
const TAR_OVERHEAD_SLACK = 1024 * 1024;

/** Kernel's MAXSYMLINKS: more hops than this while resolving a link is a loop. */
const MAX_SYMLINK_HOPS = 40;

const FILE_MODE = 0o644;
const EXEC_FILE_MODE = 0o755;
const DIR_MODE = 0o755;

// O_EXCL refuses an existing path (so an earlier entry is never overwritten) and O_NOFOLLOW makes
// sure a symlink is never written through, whatever the bookkeeping below believes.
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;

/**
 * Streams `source` (gzip → tar) into `destDir`, which must exist and be empty. Rejects with an
 * ArchiveError for anything refused; errors of the source itself (a dropped download) and of the
 * disk are passed through unchanged. On rejection every stream (`source` included) is destroyed and
 * every file handle closed; the caller removes destDir.
 */
export async function extractArchive(
  source: NodeJS.ReadableStream | Readable,
  destDir: string,
  limits?: Partial<ExtractLimits>,
): Promise<{ entries: number; bytes: number }> {
  const extraction = new Extraction(path.resolve(destDir), { ...DEFAULT_EXTRACT_LIMITS, ...limits });
  return extraction.run(source instanceof Readable ? source : new Readable().wrap(source));
}

/** Users often tar a folder rather than its contents: a root holding one directory and nothing else means that directory. */
export async function functionRoot(destDir: string): Promise<string> {
  const entries = await readdir(destDir, { withFileTypes: true });
  // Dirent comes from lstat-like data: a lone symlink to a directory is not unwrapped.
  if (entries.length === 1 && entries[0].isDirectory()) return path.join(destDir, entries[0].name);
  return destDir;
}

// tar-stream ships its own typings (they shadow @types/tar-stream): an entry's data is a streamx Readable.
type EntryData = ExtractEvents['entry'][1];

class Extraction {
  private entries = 0;
  private bytes = 0;
  private lastEntry: string | null = null;
  /** regular files extracted so far: the only valid hard-link targets */
  private readonly files = new Set<string>();
  /** paths known to be real directories (created or lstat-ed by us); '' is the root */
  private readonly dirs = new Set<string>(['']);
  private readonly symlinks: string[] = [];

  constructor(
    private readonly root: string,
    private readonly limits: ExtractLimits,
  ) {}

  async run(input: Readable): Promise<{ entries: number; bytes: number }> {
    const gunzip = createGunzip();
    const tar = tarExtract();
    let failure: unknown = null;
    let currentEntry: Promise<void> = Promise.resolve();

    // First failure wins; tearing every stream down is what stops a bomb mid-inflate.
    const fail = (err: unknown) => {
      if (failure === null) failure = this.describe(err);
      input.destroy();
      gunzip.destroy();
      tar.destroy();
    };

    // Listeners go on before any data flows, so 'close' cannot be missed.
    const tarClosed = new Promise<void>((resolve) => tar.once('close', () => resolve()));
    tar.on('error', fail);
    tar.on('entry', (header, data, next) => {
      // When tar-stream fails it also destroys the current entry's stream with the error; that error
      // reaches us through the extractor's 'error', so an unheard copy must not crash the process.
      data.on('error', () => {});
      currentEntry = this.extractEntry(header, data).then(() => next(), (err: unknown) => {
        fail(err);
        data.destroy();
      });
    });
    const piping = pipeline(input, requireGzipMagic, gunzip).catch(fail);
    const maxTarBytes =
      this.limits.maxUnpackedBytes + this.limits.maxEntries * TAR_OVERHEAD_PER_ENTRY + TAR_OVERHEAD_SLACK;
    let tarBytes = 0;

    try {
      // Fed by hand rather than piped: gunzip only inflates what tar accepts (its 'drain'), and tar
      // only accepts more once the current entry's handler has called next().
      for await (const chunk of gunzip) {
        if (failure !== null) break;
        tarBytes += chunk.length;
        if (tarBytes > maxTarBytes) {
          fail(new ArchiveError(`archive unpacks to more than ${formatBytes(maxTarBytes)} of tar data`));
          break;
        }
        if (!tar.write(chunk)) await drainedOrClosed(tar);
      }
      if (failure === null) tar.end(null);
    } catch (err) {
      fail(err);
    }
    await tarClosed;
    await currentEntry;
    await piping;
    if (failure !== null) throw failure;

    if (this.entries === 0) throw new ArchiveError('archive is empty: it contains no files');
    await this.checkSymlinkChains();
    return { entries: this.entries, bytes: this.bytes };
  }

  /** Turns tar-stream and zlib failures into messages for the user; anything else passes through. */
  private describe(err: unknown): unknown {
    if (err instanceof ArchiveError || !(err instanceof Error)) return err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'Z_BUF_ERROR') return new ArchiveError('archive is truncated: the gzip data ends unexpectedly');
    if (typeof code === 'string' && code.startsWith('Z_')) {
      return new ArchiveError(`archive is corrupt: invalid gzip data (${err.message})`);
    }
    const after = this.lastEntry === null ? '' : ` (last entry read: ${quote(this.lastEntry)})`;
    // tar-stream's own errors carry no code: recognise them by message.
    if (err.message === 'Unexpected end of data') {
      return this.entries === 0
        ? new ArchiveError('archive is not a tar file')
        : new ArchiveError(`archive is truncated: the tar data ends unexpectedly${after}`);
    }
    if (err.message.startsWith('Invalid tar header') || err.message === 'Invalid header') {
      return this.entries === 0
        ? new ArchiveError('archive is not a tar file')
        : new ArchiveError(`archive is corrupt: invalid tar header${after}`);
    }
    if (err.message === 'Header exceeds max size') {
      return new ArchiveError(`archive is corrupt: an extended tar header is too large${after}`);
    }
    return err;
  }

  private async extractEntry(header: Header, data: EntryData): Promise<void> {
    this.entries += 1;
    this.lastEntry = header.name;
    const entry = `archive entry ${quote(header.name)}`;
    if (this.entries > this.limits.maxEntries) {
      throw new ArchiveError(`archive has more than ${this.limits.maxEntries} entries`);
    }

    const type: Header['type'] | null = header.type; // null at run time for a typeflag tar-stream does not know
    if (type !== 'file' && type !== 'directory' && type !== 'symlink' && type !== 'link') {
      throw new ArchiveError(
        `${entry} is ${describeType(type)}; only files, directories, symlinks and hard links are allowed`,
      );
    }

    const rel = archivePath(header.name, entry);
    const size = header.size ?? 0;
    // Refuse on the declared size at once, before inflating a single byte of it.
    if (size > this.limits.maxUnpackedBytes - this.bytes) {
      throw new ArchiveError(
        `archive unpacks to more than ${formatBytes(this.limits.maxUnpackedBytes)} (${entry} alone declares ${formatBytes(size)})`,
      );
    }

    if (rel === '') {
      if (type !== 'directory') throw new ArchiveError(`${entry} names the archive root but is not a directory`);
      return;
    }

    switch (type) {
      case 'directory':
        // tar-stream never feeds a directory's data stream (it would not even end): leave it alone.
        await this.ensureParents(rel, entry);
        await this.makeDirectory(rel, entry, true);
        return;
      case 'file':
        await this.ensureParents(rel, entry);
        await this.writeFile(rel, entry, header, data);
        return;
      case 'symlink':
        await this.makeSymlink(rel, entry, header.linkname ?? '');
        break;
      case 'link':
        await this.makeHardLink(rel, entry, header.linkname ?? '');
        break;
    }
    // Links normally carry no data, but tar-stream waits until whatever was declared is read.
    await this.consume(data, async () => {});
  }

  private async writeFile(rel: string, entry: string, header: Header, data: EntryData): Promise<void> {
    const mode = ((header.mode ?? 0) & 0o111) !== 0 ? EXEC_FILE_MODE : FILE_MODE;
    const file = await open(this.abs(rel), CREATE_FLAGS, mode).catch((err: NodeJS.ErrnoException) => {
      throw this.conflict(err, entry);
    });
    try {
      await file.chmod(mode); // open()'s mode is filtered by the umask; the image must be readable by any user
      const written = await this.consume(data, async (chunk) => {
        for (let offset = 0; offset < chunk.length; ) {
          offset += (await file.write(chunk, offset, chunk.length - offset)).bytesWritten;
        }
      });
      if (written !== (header.size ?? 0)) {
        throw new ArchiveError(`archive is truncated: ${entry} ends after ${written} of ${header.size} bytes`);
      }
    } finally {
      await file.close();
    }
    this.files.add(rel);
  }

  /** Reads an entry's data, charging every byte to the budget before it is used. */
  private async consume(data: EntryData, use: (chunk: Buffer) => Promise<void>): Promise<number> {
    let total = 0;
    for await (const item of data) {
      const chunk = item as Buffer;
      // The header check makes this unreachable with an honest parser; it is what actually bounds
      // the disk, so it does not trust the header.
      if (chunk.length > this.limits.maxUnpackedBytes - this.bytes) {
        throw new ArchiveError(`archive unpacks to more than ${formatBytes(this.limits.maxUnpackedBytes)}`);
      }
      this.bytes += chunk.length;
      total += chunk.length;
      await use(chunk);
    }
    return total;
  }

  private async makeSymlink(rel: string, entry: string, target: string): Promise<void> {
    if (target === '') throw new ArchiveError(`${entry} is a symlink with an empty target`);
    if (target.startsWith('/')) {
      throw new ArchiveError(`${entry} is a symlink to an absolute path (${quote(target)})`);
    }
    // Relative to the link's own directory. Chains through other links are checked once the tree is complete.
    const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
    if (resolved === '..' || resolved.startsWith('../')) {
      throw new ArchiveError(`${entry} is a symlink that points outside the archive (${quote(target)})`);
    }
    await this.ensureParents(rel, entry);
    await symlink(target, this.abs(rel)).catch((err: NodeJS.ErrnoException) => {
      throw this.conflict(err, entry);
    });
    this.symlinks.push(rel);
  }

  private async makeHardLink(rel: string, entry: string, target: string): Promise<void> {
    const targetRel = archivePath(target, `${entry} is a hard link to ${quote(target)}, which`);
    if (!this.files.has(targetRel)) {
      throw new ArchiveError(`${entry} is a hard link to ${quote(target)}, which is not a file extracted before it`);
    }
    await this.ensureParents(rel, entry);
    // link(2) does not follow a symlink at the source, and targetRel is a regular file we wrote.
    await link(this.abs(targetRel), this.abs(rel)).catch((err: NodeJS.ErrnoException) => {
      throw this.conflict(err, entry);
    });
    this.files.add(rel);
  }

  /**
   * Creates the missing parent directories of `rel` one component at a time, never through a
   * symlink: mkdir(2) does not follow one at the last component, and an existing component is
   * lstat-ed. This also catches aliases on case-insensitive file systems.
   */
  private async ensureParents(rel: string, entry: string): Promise<void> {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      await this.makeDirectory(parts.slice(0, i).join('/'), entry, false);
    }
  }

  private async makeDirectory(rel: string, entry: string, isEntry: boolean): Promise<void> {
    if (this.dirs.has(rel)) return;
    try {
      await mkdir(this.abs(rel), DIR_MODE);
      await chmod(this.abs(rel), DIR_MODE); // mkdir's mode is filtered by the umask
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const existing = await lstat(this.abs(rel));
      if (existing.isSymbolicLink()) {
        throw new ArchiveError(
          isEntry
            ? `${entry} conflicts with an earlier symlink of the same name`
            : `${entry} is inside ${quote(rel)}, which is a symlink`,
        );
      }
      if (!existing.isDirectory()) {
        throw new ArchiveError(
          isEntry
            ? `${entry} conflicts with an earlier entry of the same name`
            : `${entry} is inside ${quote(rel)}, which is not a directory`,
        );
      }
    }
    this.dirs.add(rel);
  }

  private conflict(err: NodeJS.ErrnoException, entry: string): unknown {
    if (err.code === 'EEXIST') return new ArchiveError(`${entry} conflicts with an earlier entry of the same name`);
    if (err.code === 'ENAMETOOLONG') return new ArchiveError(`${entry} has a name too long for the file system`);
    return err;
  }

  /**
   * Each link was checked lexically when it was made, but `a/l -> ..` plus `a/x -> l/../..` stays
   * inside lexically and leaves physically (l/.. is the parent of the root). With the tree complete,
   * resolve every link the way the kernel would.
   */
  private async checkSymlinkChains(): Promise<void> {
    for (const rel of this.symlinks) {
      const outcome = await this.resolveInside(rel);
      if (outcome === 'outside') {
        throw new ArchiveError(`archive entry ${quote(rel)} is a symlink that leads outside the archive through another symlink`);
      }
      if (outcome === 'loop') throw new ArchiveError(`archive entry ${quote(rel)} is part of a symlink loop`);
    }
  }

  private async resolveInside(rel: string): Promise<'inside' | 'outside' | 'loop'> {
    let pending = rel.split('/');
    const at: string[] = [];
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (at.length === 0) return 'outside';
        at.pop();
        continue;
      }
      const candidate = [...at, part].join('/');
      const stats = await lstat(this.abs(candidate)).catch(() => null);
      if (stats?.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS) return 'loop';
        const target = await readlink(this.abs(candidate));
        if (target.startsWith('/')) return 'outside';
        pending = [...target.split('/'), ...pending]; // relative to `at`, the link's directory
        continue;
      }
      // A missing component is walked lexically: the kernel would stop there, so this is only stricter.
      at.push(part);
    }
    return 'inside';
  }

  private abs(rel: string): string {
    return path.join(this.root, ...rel.split('/'));
  }
}

/**
 * Normalizes a path as stored in the archive ("./a//b/" → "a/b", the root → ""). `subject` starts
 * the message when it is refused.
 */
function archivePath(raw: string, subject: string): string {
  if (raw.startsWith('/')) throw new ArchiveError(`${subject} has an absolute path`);
  const parts = raw.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) {
    const normalized = path.posix.normalize(parts.join('/'));
    if (normalized === '..' || normalized.startsWith('../')) {
      throw new ArchiveError(`${subject} escapes the archive root`);
    }
    throw new ArchiveError(`${subject} contains a ".." path segment`);
  }
  return parts.join('/');
}

/** Gates the compressed stream on the gzip magic bytes, so a plain tar or a zip gets its own message. */
async function* requireGzipMagic(chunks: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  let head = Buffer.alloc(0);
  let checked = false;
  for await (const raw of chunks) {
    const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
    if (checked) {
      yield chunk;
      continue;
    }
    head = Buffer.concat([head, chunk]);
    if (head.length < 2) continue;
    if (head[0] !== 0x1f || head[1] !== 0x8b) throw new ArchiveError('archive is not gzip-compressed');
    checked = true;
    yield head;
  }
  if (!checked) {
    throw new ArchiveError(head.length === 0 ? 'archive is empty (0 bytes)' : 'archive is not gzip-compressed');
  }
}

interface DrainableStream {
  readonly destroyed: boolean;
  on(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'close', listener: () => void): unknown;
}

function drainedOrClosed(stream: DrainableStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed) return resolve();
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

function describeType(type: Header['type'] | null): string {
  switch (type) {
    case 'character-device':
      return 'a character device';
    case 'block-device':
      return 'a block device';
    case 'fifo':
      return 'a FIFO (named pipe)';
    case 'contiguous-file':
      return 'a contiguous file';
    default:
      return 'of an unsupported type';
  }
}

/** JSON quoting keeps a hostile name (newlines, escapes) on one log line; long names are cut. */
function quote(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}

function formatBytes(bytes: number): string {
  const mib = 1024 * 1024;
  if (bytes >= mib) return `${Number.isInteger(bytes / mib) ? bytes / mib : (bytes / mib).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${Number.isInteger(bytes / 1024) ? bytes / 1024 : (bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} bytes`;
}
