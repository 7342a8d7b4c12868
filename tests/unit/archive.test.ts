// Function archives: unpacking while validating (happy / refused / hostile), the single-folder root,
// and deciding what kind of function the tree holds.
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, lstat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { detectFunction } from '../../shared/archive/detect.ts';
import {
  ArchiveError,
  DEFAULT_EXTRACT_LIMITS,
  extractArchive,
  functionRoot,
  type ExtractLimits,
} from '../../shared/archive/extract.ts';
import { makeNodeFunction, makeTar, makeTarGz, zeroFileTarGzStream, type TarEntry } from '../support/archives.ts';

const MiB = 1024 * 1024;
const dirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cp-archive-'));
  dirs.push(dir);
  return dir;
}

test.after.each(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

const streamOf = (buffer: Buffer) => Readable.from([buffer]);

/** Fails the test instead of hanging it. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function extract(archive: Buffer | Readable, limits?: Partial<ExtractLimits>) {
  const dir = await tempDir();
  const source = Buffer.isBuffer(archive) ? streamOf(archive) : archive;
  const result = await within(20_000, 'extractArchive', extractArchive(source, dir, limits));
  return { dir, result };
}

/** Asserts the archive is refused with an ArchiveError whose message matches; returns the directory. */
async function refused(archive: Buffer | Readable, message: string | RegExp, limits?: Partial<ExtractLimits>) {
  const dir = await tempDir();
  const source = Buffer.isBuffer(archive) ? streamOf(archive) : archive;
  try {
    await within(20_000, 'extractArchive', extractArchive(source, dir, limits));
  } catch (err) {
    assert.instance(err, ArchiveError, `expected an ArchiveError, got ${String(err)}`);
    const actual = (err as Error).message;
    if (typeof message === 'string') assert.is(actual, message);
    else assert.match(actual, message);
    assert.not.match(actual, /\n/, 'one line');
    assert.equal(await openFilesUnder(dir), [], 'no file handle left open');
    return dir;
  }
  assert.unreachable(`archive was accepted; expected: ${message}`);
  return dir;
}

/** Bytes of regular files under dir (what actually reached the disk). */
async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await lstat(path.join(entry.parentPath ?? entry.path, entry.name))).size;
  }
  return total;
}

/** Files this process still holds open under dir (Linux only: elsewhere, nothing to check). */
async function openFilesUnder(dir: string): Promise<string[]> {
  const fds = await readdir('/proc/self/fd').catch(() => [] as string[]);
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
  return targets.filter((target) => target.startsWith(dir + path.sep));
}

const mode = async (file: string) => (await stat(file)).mode & 0o7777;

// ---- happy path -------------------------------------------------------------------------------

test('valid archive: files, nested and explicit directories, symlinks and a hard link inside the tree', async () => {
  const archive = await makeTarGz([
    { name: 'package.json', content: '{"main":"index.mjs"}' },
    { name: 'index.mjs', content: 'export const handler = () => 1;\n' },
    { name: 'assets/', type: 'directory' },
    { name: 'deep/a/b/c.txt', content: 'deep' },
    { name: 'bin/run.sh', content: '#!/bin/sh\n', mode: 0o755 },
    { name: 'lib/current', type: 'symlink', linkname: '../deep/a' },
    { name: 'latest.mjs', type: 'symlink', linkname: 'index.mjs' },
    { name: 'copy.mjs', type: 'link', linkname: 'index.mjs' },
  ]);
  const { dir, result } = await extract(archive);

  assert.equal(result, { entries: 8, bytes: 20 + 32 + 4 + 10 });
  assert.is(await readFile(path.join(dir, 'index.mjs'), 'utf8'), 'export const handler = () => 1;\n');
  assert.is(await readFile(path.join(dir, 'deep/a/b/c.txt'), 'utf8'), 'deep');
  assert.is(await readFile(path.join(dir, 'lib/current/b/c.txt'), 'utf8'), 'deep', 'symlink works inside the tree');
  assert.is(await readlink(path.join(dir, 'latest.mjs')), 'index.mjs');
  assert.is((await stat(path.join(dir, 'copy.mjs'))).ino, (await stat(path.join(dir, 'index.mjs'))).ino);
  assert.ok((await stat(path.join(dir, 'assets'))).isDirectory());

  assert.is(await mode(path.join(dir, 'index.mjs')), 0o644);
  assert.is(await mode(path.join(dir, 'bin/run.sh')), 0o755);
  assert.is(await mode(path.join(dir, 'deep/a/b')), 0o755, 'implicit directories');
  assert.is(await mode(path.join(dir, 'assets')), 0o755, 'explicit directories');
});

test('modes are normalized: no setuid, no private files, exec bit kept', async () => {
  const archive = await makeTarGz([
    { name: 'private.js', content: 'x', mode: 0o600 },
    { name: 'setuid', content: 'x', mode: 0o4750 },
    { name: 'group-exec', content: 'x', mode: 0o610 },
    { name: 'd/', type: 'directory', mode: 0o700 },
  ]);
  const { dir } = await extract(archive);
  assert.is(await mode(path.join(dir, 'private.js')), 0o644);
  assert.is(await mode(path.join(dir, 'setuid')), 0o755);
  assert.is(await mode(path.join(dir, 'group-exec')), 0o755);
  assert.is(await mode(path.join(dir, 'd')), 0o755);
});

test('"./" prefixes, "." segments and a root entry are normalized', async () => {
  const archive = await makeTarGz([
    { name: './', type: 'directory' },
    { name: './index.js', content: 'a' },
    { name: './sub/./x.js', content: 'b' },
    { name: 'sub//y.js', content: 'c' },
  ]);
  const { dir, result } = await extract(archive);
  assert.is(result.entries, 4);
  assert.equal((await readdir(dir)).sort(), ['index.js', 'sub']);
  assert.equal((await readdir(path.join(dir, 'sub'))).sort(), ['x.js', 'y.js']);
});

test('long names (pax headers) are extracted', async () => {
  const name = `${'d'.repeat(80)}/${'f'.repeat(150)}.js`;
  const { dir } = await extract(await makeTarGz([{ name, content: 'long' }]));
  assert.is(await readFile(path.join(dir, name), 'utf8'), 'long');
});

test('a directory entry after files already created it is accepted', async () => {
  const archive = await makeTarGz([
    { name: 'lib/a.js', content: 'a' },
    { name: 'lib/', type: 'directory' },
    { name: 'lib/', type: 'directory' },
  ]);
  const { dir } = await extract(archive);
  assert.equal(await readdir(path.join(dir, 'lib')), ['a.js']);
});

test('exactly at the limits is accepted', async () => {
  const archive = await makeTarGz([
    { name: 'a', content: Buffer.alloc(600) },
    { name: 'b', content: Buffer.alloc(424) },
  ]);
  const { result } = await extract(archive, { maxEntries: 2, maxUnpackedBytes: 1024 });
  assert.equal(result, { entries: 2, bytes: 1024 });
});

test('defaults: 5000 entries, 250 MiB', () => {
  assert.equal(DEFAULT_EXTRACT_LIMITS, { maxEntries: 5000, maxUnpackedBytes: 250 * MiB });
});

// ---- functionRoot ------------------------------------------------------------------------------

test('functionRoot: a single top-level folder becomes the root', async () => {
  const { dir } = await extract(await makeTarGz([{ name: 'my-fn/index.js', content: 'x' }]));
  assert.is(await functionRoot(dir), path.join(dir, 'my-fn'));
});

test('functionRoot: anything beside the folder, or a single file or symlink, keeps the root', async () => {
  const withFile = await extract(await makeTarGz([{ name: 'my-fn/index.js', content: 'x' }, { name: 'README', content: 'r' }]));
  assert.is(await functionRoot(withFile.dir), withFile.dir);
  const single = await extract(await makeTarGz([{ name: 'index.js', content: 'x' }]));
  assert.is(await functionRoot(single.dir), single.dir);
  const link = await tempDir();
  await mkdir(path.join(link, 'real'));
  const inner = path.join(link, 'inner');
  await mkdir(inner);
  await symlink('../real', path.join(inner, 'only'));
  assert.is(await functionRoot(inner), inner);
});

// ---- refused: not an archive ---------------------------------------------------------------------

test('refused: a plain (uncompressed) tar', async () => {
  await refused(await makeTar([{ name: 'index.js', content: 'x' }]), 'archive is not gzip-compressed');
});

test('refused: a zip file', async () => {
  await refused(Buffer.from('PK\x03\x04 rest of a zip', 'latin1'), 'archive is not gzip-compressed');
});

test('refused: zero bytes, and a single byte', async () => {
  await refused(Buffer.alloc(0), 'archive is empty (0 bytes)');
  await refused(Buffer.from([0x1f]), 'archive is not gzip-compressed');
});

test('refused: gzip of something that is not a tar (short and long)', async () => {
  await refused(gzipSync('hello world'), 'archive is not a tar file');
  await refused(gzipSync('not a tar header. '.repeat(200)), 'archive is not a tar file');
});

test('refused: an empty tar, and an empty gzip', async () => {
  await refused(await makeTarGz([]), 'archive is empty: it contains no files');
  await refused(gzipSync(Buffer.alloc(0)), 'archive is empty: it contains no files');
});

test('refused: gzip magic followed by garbage', async () => {
  await refused(Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(2000)]), /^archive is (corrupt: invalid gzip data|truncated)/);
  await refused(Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), Buffer.alloc(100, 0xff)]), /^archive is corrupt: invalid gzip data \(.+\)$/);
});

// ---- refused: paths ------------------------------------------------------------------------------

test('refused: absolute path', async () => {
  await refused(await makeTarGz([{ name: '/etc/passwd', content: 'x' }]), 'archive entry "/etc/passwd" has an absolute path');
});

test('refused: ".." escaping the root, directly or after a folder', async () => {
  const dir = await refused(await makeTarGz([{ name: '../evil', content: 'x' }]), 'archive entry "../evil" escapes the archive root');
  assert.not.ok(await exists(path.join(dir, '..', 'evil')));
  await refused(await makeTarGz([{ name: 'a/../../evil', content: 'x' }]), 'archive entry "a/../../evil" escapes the archive root');
  await refused(await makeTarGz([{ name: './..', type: 'directory' }]), 'archive entry "./.." escapes the archive root');
});

test('refused: any ".." segment, even one that stays inside', async () => {
  await refused(await makeTarGz([{ name: 'a/../b', content: 'x' }]), 'archive entry "a/../b" contains a ".." path segment');
});

test('refused: a hostile name stays on one quoted line', async () => {
  await refused(await makeTarGz([{ name: '../x\nBuild succeeded', content: 'x' }]), 'archive entry "../x\\nBuild succeeded" escapes the archive root');
});

// ---- refused: links ------------------------------------------------------------------------------

test('refused: symlink to an absolute path', async () => {
  await refused(await makeTarGz([{ name: 'etc', type: 'symlink', linkname: '/etc' }]), 'archive entry "etc" is a symlink to an absolute path ("/etc")');
});

test('refused: symlink resolving outside the tree (relative to its own directory)', async () => {
  await refused(
    await makeTarGz([{ name: 'sub/up', type: 'symlink', linkname: '../../outside' }]),
    'archive entry "sub/up" is a symlink that points outside the archive ("../../outside")',
  );
  // "../x" is fine one level down
  await extract(await makeTarGz([{ name: 'sub/up', type: 'symlink', linkname: '../x' }]));
});

test('refused: symlink escaping through another symlink (lexically inside, physically outside)', async () => {
  await refused(
    await makeTarGz([
      { name: 'd/l', type: 'symlink', linkname: '..' },
      { name: 'd/x', type: 'symlink', linkname: 'l/../..' },
    ]),
    'archive entry "d/x" is a symlink that leads outside the archive through another symlink',
  );
});

test('refused: symlink loop', async () => {
  await refused(
    await makeTarGz([
      { name: 'a', type: 'symlink', linkname: 'b' },
      { name: 'b', type: 'symlink', linkname: 'a' },
    ]),
    'archive entry "a" is part of a symlink loop',
  );
});

test('refused: writing through an extracted symlink, even one pointing inside', async () => {
  const dir = await refused(
    await makeTarGz([
      { name: 'sub/', type: 'directory' },
      { name: 'link', type: 'symlink', linkname: 'sub' },
      { name: 'link/file', content: 'x' },
    ]),
    'archive entry "link/file" is inside "link", which is a symlink',
  );
  assert.equal(await readdir(path.join(dir, 'sub')), [], 'nothing written through the link');
  await refused(
    await makeTarGz([
      { name: 'self', type: 'symlink', linkname: '.' },
      { name: 'self/deeper/file', content: 'x' },
    ]),
    'archive entry "self/deeper/file" is inside "self", which is a symlink',
  );
});

test('refused: replacing an extracted symlink with a file or a directory', async () => {
  await refused(
    await makeTarGz([
      { name: 'link', type: 'symlink', linkname: 'x' },
      { name: 'link', content: 'x' },
    ]),
    'archive entry "link" conflicts with an earlier entry of the same name',
  );
  await refused(
    await makeTarGz([
      { name: 'link', type: 'symlink', linkname: 'x' },
      { name: 'link/', type: 'directory' },
    ]),
    'archive entry "link/" conflicts with an earlier symlink of the same name',
  );
});

test('refused: hard links outside the tree, absolute, or not to an earlier file', async () => {
  await refused(await makeTarGz([{ name: 'h', type: 'link', linkname: '../x' }]), 'archive entry "h" is a hard link to "../x", which escapes the archive root');
  await refused(await makeTarGz([{ name: 'h', type: 'link', linkname: '/etc/passwd' }]), 'archive entry "h" is a hard link to "/etc/passwd", which has an absolute path');
  await refused(
    await makeTarGz([
      { name: 'h', type: 'link', linkname: 'later.js' },
      { name: 'later.js', content: 'x' },
    ]),
    'archive entry "h" is a hard link to "later.js", which is not a file extracted before it',
  );
  await refused(
    await makeTarGz([
      { name: 'dir/', type: 'directory' },
      { name: 'h', type: 'link', linkname: 'dir' },
    ]),
    'archive entry "h" is a hard link to "dir", which is not a file extracted before it',
  );
  await refused(
    await makeTarGz([
      { name: 's', type: 'symlink', linkname: 'x' },
      { name: 'h', type: 'link', linkname: 's' },
    ]),
    'archive entry "h" is a hard link to "s", which is not a file extracted before it',
  );
});

// ---- refused: entry types and conflicts ----------------------------------------------------------

for (const [type, what] of [
  ['fifo', 'a FIFO (named pipe)'],
  ['character-device', 'a character device'],
  ['block-device', 'a block device'],
] as const) {
  test(`refused: ${type}`, async () => {
    await refused(
      await makeTarGz([{ name: 'index.js', content: 'x' }, { name: 'dev/thing', type }]),
      `archive entry "dev/thing" is ${what}; only files, directories, symlinks and hard links are allowed`,
    );
  });
}

test('refused: the same file twice, or a file where a directory must go', async () => {
  await refused(
    await makeTarGz([
      { name: 'a.js', content: '1' },
      { name: './a.js', content: '2' },
    ]),
    'archive entry "./a.js" conflicts with an earlier entry of the same name',
  );
  await refused(
    await makeTarGz([
      { name: 'a', content: '1' },
      { name: 'a/b', content: '2' },
    ]),
    'archive entry "a/b" is inside "a", which is not a directory',
  );
  await refused(
    await makeTarGz([
      { name: 'a', content: '1' },
      { name: 'a/', type: 'directory' },
    ]),
    'archive entry "a/" conflicts with an earlier entry of the same name',
  );
});

// ---- refused: limits and bombs -------------------------------------------------------------------

test('refused: more entries than allowed (directories count)', async () => {
  const entries: TarEntry[] = [{ name: 'dir/', type: 'directory' }];
  for (let i = 0; i < 10; i++) entries.push({ name: `dir/f${i}`, content: 'x' });
  await refused(await makeTarGz(entries), 'archive has more than 10 entries', { maxEntries: 10 });
  await extract(await makeTarGz(entries), { maxEntries: 11 });
});

test('refused at once: a header declaring more than the budget', async () => {
  const dir = await refused(
    await makeTarGz([
      { name: 'index.js', content: 'x' },
      { name: 'huge.bin', content: '', size: 5 * 1024 * MiB },
    ]),
    'archive unpacks to more than 250 MiB (archive entry "huge.bin" alone declares 5120 MiB)',
  );
  assert.is(await diskBytes(dir), 1);
});

test('gzip bomb: 300 MiB of zeros is refused with the default limit, nothing past the limit reaches the disk', async () => {
  let produced = 0;
  const started = Date.now();
  const bomb = zeroFileTarGzStream(300 * MiB, { name: 'bomb.bin', produced: (n) => (produced = n) });
  const dir = await refused(bomb, 'archive unpacks to more than 250 MiB (archive entry "bomb.bin" alone declares 300 MiB)');
  assert.ok((await diskBytes(dir)) <= DEFAULT_EXTRACT_LIMITS.maxUnpackedBytes);
  assert.ok(produced < 32 * MiB, `the generator was stopped early (${produced} bytes produced)`);
  assert.ok(Date.now() - started < 5_000, 'refused quickly');
});

test('gzip bomb: many small entries, each within budget, are cut at the limit while streaming', async () => {
  const limit = 1 * MiB + 100;
  const entries: TarEntry[] = [];
  for (let i = 0; i < 40; i++) entries.push({ name: `zeros/${i}.bin`, content: Buffer.alloc(256 * 1024) });
  const archive = await makeTarGz(entries);
  assert.ok(archive.length < 100 * 1024, 'it is a bomb: 10 MiB compress to a few KiB');
  const dir = await refused(archive, 'archive unpacks to more than 1.0 MiB (archive entry "zeros/4.bin" alone declares 256 KiB)', { maxUnpackedBytes: limit });
  const written = await diskBytes(dir);
  assert.ok(written <= limit, `${written} bytes on disk`);
  assert.is(written, 4 * 256 * 1024);
});

test('gzip bomb: a large single entry against a small limit, streamed', async () => {
  const dir = await refused(zeroFileTarGzStream(64 * MiB), /^archive unpacks to more than 8 MiB/, { maxUnpackedBytes: 8 * MiB });
  assert.ok((await diskBytes(dir)) <= 8 * MiB);
});

test('gzip bomb: endless zero blocks after the last entry are cut too (CPU, not disk)', async () => {
  const tar = await makeTar([{ name: 'index.js', content: 'x' }]);
  const archive = gzipSync(Buffer.concat([tar, Buffer.alloc(8 * MiB)]));
  // 64 KiB of files + 10 entries × 4 KiB of headers + 1 MiB of slack
  await refused(archive, 'archive unpacks to more than 1.1 MiB of tar data', { maxEntries: 10, maxUnpackedBytes: 64 * 1024 });
  // ordinary end-of-archive padding (a 10 KiB record) is fine
  await extract(gzipSync(Buffer.concat([tar, Buffer.alloc(10 * 1024)])), { maxEntries: 1, maxUnpackedBytes: 1 });
});

// ---- refused: truncated and broken streams -------------------------------------------------------

test('truncated gzip (cut in half) is refused, not a hang', async () => {
  const archive = await makeTarGz([
    { name: 'package.json', content: '{}' },
    { name: 'random.bin', content: randomBytes(64 * 1024) },
    { name: 'index.js', content: 'x' },
  ]);
  await refused(archive.subarray(0, archive.length >> 1), /^archive is truncated/);
});

test('truncated at many points: always an ArchiveError, never a hang or another error', async () => {
  const archive = await makeTarGz([
    { name: 'a/', type: 'directory' },
    { name: 'a/random.bin', content: randomBytes(8 * 1024) },
    { name: 'a/link', type: 'symlink', linkname: 'random.bin' },
    { name: 'a/index.js', content: 'x'.repeat(3000) },
  ]);
  for (const cut of [3, 10, 30, 100, 500, 1000, 4000, 8000, archive.length - 9, archive.length - 1]) {
    await refused(archive.subarray(0, cut), /^archive is (truncated|corrupt|not a tar file|empty)/);
  }
});

test('tar data ending inside an entry is refused as truncated', async () => {
  await refused(
    await makeTarGz([
      { name: 'index.js', content: 'x' },
      { name: 'short.bin', content: 'only this', size: 4096 },
    ]),
    /^archive is truncated: /,
  );
});

test('a failing source (dropped download) rejects with its own error, promptly', async () => {
  const archive = await makeTarGz([{ name: 'random.bin', content: randomBytes(256 * 1024) }]);
  const source = new Readable({
    read() {
      this.push(archive.subarray(0, 64 * 1024));
      this.destroy(new Error('socket hang up'));
    },
  });
  const dir = await tempDir();
  try {
    await within(5_000, 'extractArchive', extractArchive(source, dir));
    assert.unreachable();
  } catch (err) {
    assert.not.instance(err, ArchiveError);
    assert.is((err as Error).message, 'socket hang up');
  }
});

// ---- detectFunction ------------------------------------------------------------------------------

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await tempDir();
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  return dir;
}

async function detectRefused(root: string, message: string | RegExp) {
  try {
    await detectFunction(root);
  } catch (err) {
    assert.instance(err, ArchiveError);
    if (typeof message === 'string') assert.is((err as Error).message, message);
    else assert.match((err as Error).message, message);
    return;
  }
  assert.unreachable(`expected refusal: ${message}`);
}

test('detect: a root Dockerfile wins over package.json', async () => {
  const root = await tree({ Dockerfile: 'FROM scratch\n', 'package.json': '{"main":"index.js"}', 'index.js': '' });
  assert.equal(await detectFunction(root), { kind: 'dockerfile' });
});

test('detect: package.json "main", tried as given, with .js / .mjs, and as a directory index', async () => {
  const cases: Array<[string, Record<string, string>, string]> = [
    ['src/handler.js', { 'src/handler.js': '' }, 'src/handler.js'],
    ['./lib/main', { 'lib/main.js': '' }, 'lib/main.js'],
    ['m', { 'm.mjs': '' }, 'm.mjs'],
    ['pkg', { 'pkg/index.js': '' }, 'pkg/index.js'],
    ['pkg/', { 'pkg/index.mjs': '' }, 'pkg/index.mjs'],
    ['', { 'index.mjs': '' }, 'index.mjs'],
  ];
  for (const [main, files, entry] of cases) {
    const root = await tree({ 'package.json': JSON.stringify({ main }), ...files });
    assert.equal(await detectFunction(root), { kind: 'node', entry }, `main ${JSON.stringify(main)}`);
  }
});

test('detect: package.json "main" that does not exist, escapes, or is not a string', async () => {
  await detectRefused(
    await tree({ 'package.json': '{"main":"dist/index.js"}', 'index.js': '' }),
    'package.json "main" ("dist/index.js") does not exist in the archive (also tried .js, .mjs, /index.js and /index.mjs)',
  );
  await detectRefused(await tree({ 'package.json': '{"main":"../outside.js"}' }), 'package.json "main" ("../outside.js") points outside the archive');
  await detectRefused(await tree({ 'package.json': '{"main":"/srv/app.js"}' }), 'package.json "main" ("/srv/app.js") must be a path relative to the archive root');
  await detectRefused(await tree({ 'package.json': '{"main":42}' }), 'package.json "main" must be a string, not 42');
  await detectRefused(await tree({ 'package.json': '{"main":"lib"}', 'lib/other.js': '' }), /^package.json "main" \("lib"\) does not exist/);
});

test('detect: package.json "main" reaching outside through a symlink', async () => {
  const outside = await tree({ 'secret.js': '' });
  const root = await tree({ 'package.json': '{"main":"out.js"}' });
  await symlink(path.join(outside, 'secret.js'), path.join(root, 'out.js'));
  await detectRefused(root, 'package.json "main" ("out.js") points outside the archive');
});

test('detect: no "main": index.js, then index.mjs', async () => {
  assert.equal(await detectFunction(await tree({ 'package.json': '{"name":"x"}', 'index.js': '', 'index.mjs': '' })), { kind: 'node', entry: 'index.js' });
  assert.equal(await detectFunction(await tree({ 'index.mjs': '' })), { kind: 'node', entry: 'index.mjs' });
});

test('detect: nothing to run', async () => {
  const message = 'no handler found: expected package.json "main", index.js or index.mjs at the archive root, or a Dockerfile';
  await detectRefused(await tree({ 'README.md': '' }), message);
  await detectRefused(await tree({ 'package.json': '{}', 'lib/index.js': '' }), message);
  await detectRefused(await tree({ 'index.js/inner.js': '' }), message);
});

test('detect: invalid package.json', async () => {
  await detectRefused(await tree({ 'package.json': '{"main": ' }), /^package.json is not valid JSON: /);
  await detectRefused(await tree({ 'package.json': '["index.js"]' }), 'package.json must contain a JSON object');
});

test('end to end: a wrapped Node function unpacks, unwraps and is detected', async () => {
  const plain = await extract(await makeNodeFunction('export const handler = () => 1;', { 'lib/x.mjs': 'export default 1;' }));
  assert.equal(await detectFunction(await functionRoot(plain.dir)), { kind: 'node', entry: 'index.mjs' });

  const wrapped = await extract(
    await makeTarGz([
      { name: 'fn/', type: 'directory' },
      { name: 'fn/package.json', content: '{"main":"src/main"}' },
      { name: 'fn/src/main.js', content: '' },
    ]),
  );
  assert.equal(await detectFunction(await functionRoot(wrapped.dir)), { kind: 'node', entry: 'src/main.js' });
});

test('makeTarGz is deterministic', async () => {
  const entries: TarEntry[] = [{ name: 'a', content: 'x' }, { name: 'b', type: 'symlink', linkname: 'a' }];
  assert.ok((await makeTarGz(entries)).equals(await makeTarGz(entries)));
});

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

test.run();
