// The image builder's pure parts, without Docker: deterministic layers (what is in the tar, in
// what order, with which metadata, and that the same files give the same digest however they were
// written), the dependencies-layer cache, and the image config and manifest.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import tar from 'tar-stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { comparePaths, writeLayer, type LayerSource } from '../../shared/runtime/image/layer.ts';
import { LayerCache } from '../../shared/runtime/image/layer-cache.ts';
import { imageManifest, nodeImageConfig, parseManifest } from '../../shared/runtime/image/image-config.ts';
import { sha256Digest } from '../../shared/runtime/registry.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-layer-'));
test.after(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const out = () => path.join(root, `layer-${n++}.tar.gz`);

/** A directory with `files` (name → content, or {content, mode}, or {link}). */
function makeDir(files: Record<string, string | { content: string; mode: number } | { link: string }>, mtime?: Date): string {
  const dir = fs.mkdtempSync(path.join(root, 'src-'));
  for (const [name, spec] of Object.entries(files)) {
    const full = path.join(dir, name);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    if (typeof spec === 'string') fs.writeFileSync(full, spec);
    else if ('link' in spec) fs.symlinkSync(spec.link, full);
    else {
      fs.writeFileSync(full, spec.content);
      fs.chmodSync(full, spec.mode);
    }
    if (mtime && !(typeof spec === 'object' && 'link' in spec)) fs.utimesSync(full, mtime, mtime);
  }
  return dir;
}

interface Read {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
  linkname: string | null;
  content: string;
}

async function readLayer(file: string): Promise<Read[]> {
  const entries: Read[] = [];
  const extract = tar.extract();
  extract.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c) => chunks.push(c as Buffer));
    stream.on('end', () => {
      entries.push({
        name: h.name,
        type: h.type ?? 'file',
        mode: h.mode ?? 0,
        uid: h.uid ?? -1,
        gid: h.gid ?? -1,
        uname: h.uname ?? '',
        gname: h.gname ?? '',
        mtime: h.mtime?.getTime() ?? -1,
        linkname: h.linkname ?? null,
        content: Buffer.concat(chunks).toString(),
      });
      next();
    });
  });
  const done = new Promise<void>((resolve, reject) => extract.on('finish', () => resolve()).on('error', reject));
  extract.end(zlib.gunzipSync(fs.readFileSync(file)));
  await done;
  return entries;
}

const functionSource = (dir: string): LayerSource => ({
  dir,
  prefix: 'app',
  extra: [
    { path: '.containerpub/bootstrap.mjs', content: Buffer.from('// bootstrap') },
    { path: '.containerpub/entry.json', content: Buffer.from('{"entry":"index.mjs"}') },
  ],
  exclude: ['.dockerignore', '.containerpub'],
});

test('the same files give the same bytes, whatever their mtimes, owners-by-umask and write order', async () => {
  const a = makeDir({ 'index.mjs': 'export default 1', 'lib/util.js': 'x', 'lib/z.js': 'z', 'b.txt': 'b' }, new Date('2020-01-01'));
  const b = makeDir({ 'b.txt': 'b', 'lib/z.js': 'z', 'lib/util.js': 'x', 'index.mjs': 'export default 1' }, new Date('2024-06-01'));
  fs.chmodSync(path.join(b, 'b.txt'), 0o600); // no execute bit either way: 0644 in the layer
  const la = await writeLayer(functionSource(a), out());
  const lb = await writeLayer(functionSource(b), out());
  assert.is(la.digest, lb.digest);
  assert.is(la.diffId, lb.diffId);
  assert.ok(fs.readFileSync(la.file).equals(fs.readFileSync(lb.file)));
  // the digests are those of the bytes written: the .tar.gz, and the tar inside
  const gz = fs.readFileSync(la.file);
  assert.is(la.digest, `sha256:${createHash('sha256').update(gz).digest('hex')}`);
  assert.is(la.diffId, `sha256:${createHash('sha256').update(zlib.gunzipSync(gz)).digest('hex')}`);
  assert.is(la.size, gz.length);

  const c = makeDir({ 'index.mjs': 'export default 2', 'lib/util.js': 'x', 'lib/z.js': 'z', 'b.txt': 'b' });
  assert.is.not((await writeLayer(functionSource(c), out())).digest, la.digest, 'one byte changed: another layer');
});

test('entries: sorted, under the prefix, epoch mtimes, root without names, normalized modes, symlinks kept', async () => {
  const dir = makeDir({
    'index.mjs': 'export default 1',
    'a-b.txt': 'dash',
    'a/inner.txt': 'inner',
    'bin/run': { content: '#!/usr/bin/env node', mode: 0o4750 }, // setuid + group exec: 0755 only
    'secret.txt': { content: 's', mode: 0o600 },
    'link-to-index': { link: 'index.mjs' },
    '.dockerignore': 'index.mjs',
    '.containerpub/bootstrap.mjs': 'the user cannot bring their own bootstrap',
  });
  fs.chmodSync(path.join(dir, 'a'), 0o700);
  execFileSync('mkfifo', [path.join(dir, 'a-fifo')]);
  const layer = await writeLayer(functionSource(dir), out());
  const entries = await readLayer(layer.file);
  assert.equal(
    entries.map((e) => e.name),
    [
      'app',
      'app/.containerpub',
      'app/.containerpub/bootstrap.mjs',
      'app/.containerpub/entry.json',
      'app/a',
      'app/a/inner.txt',
      'app/a-b.txt',
      'app/bin',
      'app/bin/run',
      'app/index.mjs',
      'app/link-to-index',
      'app/secret.txt',
    ],
    'no .dockerignore, no fifo, the platform\'s .containerpub only',
  );
  assert.is(layer.entries, entries.length);
  for (const e of entries) {
    assert.is(e.mtime, 0, e.name);
    assert.equal([e.uid, e.gid, e.uname, e.gname], [0, 0, '', ''], e.name);
  }
  const byName = Object.fromEntries(entries.map((e) => [e.name, e]));
  assert.is(byName['app']!.mode, 0o755);
  assert.is(byName['app/a']!.mode, 0o755, 'a 0700 directory is opened to nobody');
  assert.is(byName['app/bin/run']!.mode, 0o755);
  assert.is(byName['app/secret.txt']!.mode, 0o644);
  assert.is(byName['app/index.mjs']!.mode, 0o644);
  assert.is(byName['app/link-to-index']!.type, 'symlink');
  assert.is(byName['app/link-to-index']!.linkname, 'index.mjs');
  assert.is(byName['app/.containerpub/bootstrap.mjs']!.content, '// bootstrap');
});

test('long and non-ASCII paths survive (pax headers), deterministically', async () => {
  const long = `${'d'.repeat(90)}/${'e'.repeat(90)}/${'f'.repeat(40)}.js`;
  const files = { [long]: 'deep', 'café/ü.js': 'unicode' };
  const a = await writeLayer({ dir: makeDir(files), prefix: 'app/node_modules' }, out());
  const b = await writeLayer({ dir: makeDir(files), prefix: 'app/node_modules' }, out());
  assert.is(a.digest, b.digest);
  const names = (await readLayer(a.file)).map((e) => e.name);
  assert.ok(names.includes(`app/node_modules/${long}`), names.join('\n'));
  assert.ok(names.includes('app/node_modules/café/ü.js'));
  assert.equal(names.slice(0, 2), ['app', 'app/node_modules']);
});

test('comparePaths: a directory right before its contents, names bytewise', () => {
  const sorted = ['a/x', 'a', 'a-b', 'B', 'a.txt', 'a/b/c'].sort(comparePaths);
  assert.equal(sorted, ['B', 'a', 'a/b/c', 'a/x', 'a-b', 'a.txt']);
});

test('an aborted write rejects and leaves no file', async () => {
  const dir = makeDir({ 'big.bin': 'x'.repeat(4 * 1024 * 1024) });
  const ac = new AbortController();
  const file = out();
  const writing = writeLayer({ dir, prefix: 'app' }, file, ac.signal);
  setImmediate(() => ac.abort(new Error('stop')));
  await writing.then(
    () => assert.unreachable('aborted'),
    () => {},
  );
  assert.not.ok(fs.existsSync(file));
});

test('the layer cache: made once per key, then the same file and digests without making it again', async () => {
  const cache = new LayerCache(path.join(root, 'cache'));
  const dir = makeDir({ 'left-pad/index.js': 'module.exports = 1' });
  let made = 0;
  const make = (o: string) => {
    made++;
    return writeLayer({ dir, prefix: 'app/node_modules' }, o);
  };
  const first = await cache.get('a'.repeat(64), make);
  const second = await cache.get('a'.repeat(64), make);
  assert.is(made, 1);
  assert.equal([first.cached, second.cached], [false, true]);
  assert.is(second.layer.digest, first.layer.digest);
  assert.is(second.layer.file, first.layer.file);
  const fresh = await writeLayer({ dir, prefix: 'app/node_modules' }, out());
  assert.is(fresh.digest, first.layer.digest, 'cached or not: one digest');
  // a truncated entry is not trusted
  fs.truncateSync(first.layer.file, 10);
  assert.is((await cache.get('a'.repeat(64), make)).cached, false);
  assert.is(made, 2);
  // a key that is not a file name is hashed into one
  await cache.get('../../etc/passwd', make);
  assert.ok(fs.readdirSync(path.join(root, 'cache')).every((f) => !f.includes('passwd')));
});

test('the layer cache keeps its most recently used entries only', async () => {
  const dir = path.join(root, 'lru');
  const cache = new LayerCache(dir, 2);
  const src = makeDir({ 'x/index.js': '1' });
  const make = (o: string) => writeLayer({ dir: src, prefix: 'app/node_modules' }, o);
  await cache.get('k1', make);
  await new Promise((r) => setTimeout(r, 20));
  await cache.get('k2', make);
  await new Promise((r) => setTimeout(r, 20));
  assert.ok((await cache.get('k1', make)).cached, 'k1 used again: now the most recent');
  await new Promise((r) => setTimeout(r, 20));
  await cache.get('k3', make);
  assert.equal(fs.readdirSync(dir).sort(), ['k1.json', 'k1.tar.gz', 'k3.json', 'k3.tar.gz']);
});

test('image config: the base plus our layers, run settings and labels; no wall-clock time; stable bytes', () => {
  const base = {
    architecture: 'amd64',
    os: 'linux',
    created: '2026-12-01T10:00:00.123Z',
    docker_version: '20.10.24',
    container_config: { Cmd: ['build'] },
    config: { Env: ['PATH=/usr/bin'], Cmd: ['node'], Entrypoint: ['/bin/tini'], Labels: { 'org.base': 'yes' }, User: '' },
    rootfs: { type: 'layers', diff_ids: ['sha256:' + '1'.repeat(64)] },
    history: [{ created: '2026-12-01T10:00:00Z', created_by: 'import' }],
  };
  const added = [
    { diffId: 'sha256:' + '2'.repeat(64), createdBy: 'deps' },
    { diffId: 'sha256:' + '3'.repeat(64), createdBy: 'files' },
  ];
  const doc = nodeImageConfig(base, added, { functionId: 'fn-1', version: 7 });
  assert.ok(doc.bytes.equals(nodeImageConfig(structuredClone(base), added, { functionId: 'fn-1', version: 7 }).bytes));
  assert.is(doc.digest, sha256Digest(doc.bytes));
  const config = JSON.parse(doc.bytes.toString());
  assert.equal(config.config, {
    Env: ['PATH=/usr/bin'],
    Cmd: ['node', '/app/.containerpub/bootstrap.mjs'],
    Entrypoint: null,
    Labels: { 'org.base': 'yes', 'containerpub.runtime': 'node', 'containerpub.function': 'fn-1', 'containerpub.version': '7' },
    User: '65534:65534',
    WorkingDir: '/app',
  });
  assert.equal(config.rootfs.diff_ids, [base.rootfs.diff_ids[0], ...added.map((a) => a.diffId)]);
  assert.is(config.created, '1970-01-01T00:00:00Z');
  assert.equal(config.history.slice(1), added.map((a) => ({ created: '1970-01-01T00:00:00Z', created_by: a.createdBy })));
  assert.is(config.docker_version, undefined);
  assert.is(config.container_config, undefined);

  const manifest = imageManifest({ mediaType: 'application/vnd.docker.container.image.v1+json', size: doc.bytes.length, digest: doc.digest }, []);
  const parsed = parseManifest({ bytes: manifest.bytes, mediaType: manifest.mediaType, digest: manifest.digest }, 'test');
  assert.is(parsed.config.digest, doc.digest);
  assert.throws(
    () => parseManifest({ bytes: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] })), mediaType: '', digest: '' }, 'base'),
    /multi-platform/,
  );
});

test.run();
