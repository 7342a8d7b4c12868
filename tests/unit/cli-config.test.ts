// The CLI's configuration inputs without a server: KEY=VALUE settings with units, containerpub.json,
// git metadata, the comparison's human lines, and watch's "already has these settings" check.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeComparison } from '../../scripts/cli/commands/config.ts';
import { formatDuration, parseConfigArgs } from '../../scripts/cli/config-args.ts';
import { CliError, UsageError } from '../../scripts/cli/errors.ts';
import { gitMetadata, readProject } from '../../scripts/cli/project.ts';
import { configSatisfies } from '../../scripts/cli/watch.ts';

const dirs: string[] = [];
const tempDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-cli-config-'));
  dirs.push(d);
  return d;
};
test.after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function usage(fn: () => unknown, pattern: RegExp) {
  try {
    fn();
  } catch (err) {
    assert.instance(err, UsageError);
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable('accepted');
}

test('settings: short and long names, memory and duration units, default removes', () => {
  assert.equal(parseConfigArgs(['memory=256', 'timeout=5s', 'min=1', 'max=4', 'concurrency=2', 'network=outbound']), {
    memoryMb: 256,
    timeoutMs: 5000,
    minInstances: 1,
    maxInstances: 4,
    concurrency: 2,
    network: 'outbound',
  });
  assert.equal(parseConfigArgs(['memoryMb=1G', 'timeoutMs=250']), { memoryMb: 1024, timeoutMs: 250 });
  assert.equal(parseConfigArgs(['memory=512Mi', 'timeout=2m']), { memoryMb: 512, timeoutMs: 120_000 });
  assert.equal(parseConfigArgs(['memory=0.5G', 'timeout=1.5s']), { memoryMb: 512, timeoutMs: 1500 });
  assert.equal(parseConfigArgs(['timeout=750ms', 'MIN=0']), { timeoutMs: 750, minInstances: 0 });
  assert.equal(parseConfigArgs(['memory=default', 'network=']), { memoryMb: null, network: null });
  assert.equal(parseConfigArgs([]), {});
});

test('settings: what cannot be read is a usage error naming the word', () => {
  usage(() => parseConfigArgs(['memory']), /"memory" is not KEY=VALUE/);
  usage(() => parseConfigArgs(['=5']), /is not KEY=VALUE/);
  usage(() => parseConfigArgs(['cpu=2']), /unknown setting "cpu"/);
  usage(() => parseConfigArgs(['memory=lots']), /memory=lots: must be MiB/);
  usage(() => parseConfigArgs(['memory=1.3']), /whole number of MiB/);
  usage(() => parseConfigArgs(['timeout=5h']), /must be a duration/);
  usage(() => parseConfigArgs(['timeout=0.0001s']), /whole number of milliseconds/);
  usage(() => parseConfigArgs(['min=-1']), /min=-1: must be a whole number/);
  usage(() => parseConfigArgs(['network=public']), /must be none or outbound/);
  usage(() => parseConfigArgs(['memory=1', 'mem=2']), /given twice/);
});

test('durations read back in the unit they were given', () => {
  assert.equal([formatDuration(500), formatDuration(5000), formatDuration(120_000), formatDuration(1500)], ['500 ms', '5 s', '2 min', '1500 ms']);
});

test('containerpub.json: absent, settings, and what is refused', async () => {
  const dir = tempDir();
  assert.equal(await readProject(dir), { file: null });
  const file = path.join(dir, 'containerpub.json');
  fs.writeFileSync(file, JSON.stringify({ $schema: 'x', name: 'api', env: { A: 'b' }, memoryMb: 128, network: 'none' }));
  assert.equal(await readProject(dir), { file, name: 'api', config: { env: { A: 'b' }, memoryMb: 128, network: 'none' } });
  fs.writeFileSync(file, JSON.stringify({ name: 'only-a-name' }));
  assert.equal(await readProject(dir), { file, name: 'only-a-name', config: undefined });
  const refused: [unknown, RegExp][] = [
    [{ env: { A: 1 } }, /env\.A: env values must be strings/],
    [{ memoryMb: '128' }, /memoryMb: /],
    [{ timeoutMs: 1.5 }, /timeoutMs: must be an integer/],
    [{ network: 'public' }, /network: /],
    [{ memory: 1, cpu: 2 }, /unknown keys "memory", "cpu"/],
    [[1, 2], /\(file\)/],
  ];
  for (const [content, pattern] of refused) {
    fs.writeFileSync(file, JSON.stringify(content));
    const refusal = await readProject(dir).then(() => null, (e: unknown) => e);
    assert.ok(refusal instanceof CliError && pattern.test(refusal.message), `${JSON.stringify(content)}: ${String(refusal)}`);
  }
  const value = 'do-not-print-me';
  fs.writeFileSync(file, JSON.stringify({ secrets: { TOKEN: value } }));
  try {
    await readProject(dir);
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /"secrets" do not belong/);
    assert.not.ok((err as Error).message.includes(value));
  }
  fs.writeFileSync(file, '{ not json');
  await readProject(dir).then(() => assert.unreachable('accepted'), (e: unknown) => assert.match((e as Error).message, /not valid JSON/));
});

test('git metadata: none outside a repository or before the first commit; the last commit after', () => {
  const dir = tempDir();
  assert.is(gitMetadata(dir), undefined);
  const git = (...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=Grace Hopper', '-c', 'user.email=grace@example.com', '-c', 'commit.gpgsign=false', ...args], {
      cwd: dir,
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', HOME: dir, GIT_CONFIG_NOSYSTEM: '1' },
    });
  git('init', '-q');
  assert.is(gitMetadata(dir), undefined, 'no commit yet');
  fs.writeFileSync(path.join(dir, 'a.txt'), 'a');
  git('add', '.');
  git('commit', '-q', '-m', `${'long subject '.repeat(60)}\n\nbody text`);
  const sub = path.join(dir, 'sub');
  fs.mkdirSync(sub);
  const meta = gitMetadata(sub)!;
  assert.match(meta.gitSha!, /^[0-9a-f]{40}$/);
  assert.is(meta.author, 'Grace Hopper <grace@example.com>');
  assert.is(meta.message!.length, 500, 'clipped to what the API accepts');
  assert.ok(meta.message!.startsWith('long subject long subject'));
  assert.not.match(meta.message!, /body text/);
});

test('the comparison in lines: sorted by key, secrets never with a value', () => {
  const lines = describeComparison({
    code: { changed: true, sha256: ['a'.repeat(64), 'b'.repeat(64)] },
    config: {
      added: { 'env.B': 'x', 'secrets.T': '(secret)' },
      removed: { 'env.A': 'old' },
      changed: { timeoutMs: { from: 30000, to: 5000 }, 'secrets.K': { from: '(secret)', to: '(secret)' } },
    },
  });
  assert.equal(lines, [
    `code: changed (${'a'.repeat(12)} → ${'b'.repeat(12)})`,
    'config:',
    '  - env.A (was "old")',
    '  + env.B = "x"',
    '  ~ secrets.K (secret value changed)',
    '  + secrets.T (secret)',
    '  ~ timeoutMs: 30000 → 5000',
  ]);
});

test('watch: a version already has the settings of the file when every one it names matches', () => {
  const view = { env: { A: '1', B: '2' }, secrets: ['S'], memoryMb: 256, timeoutMs: 30000, minInstances: 0, maxInstances: 4, concurrency: 1, network: 'none' as const };
  assert.ok(configSatisfies(view, undefined));
  assert.ok(configSatisfies(view, { env: { A: '1' }, memoryMb: 256 }));
  assert.not.ok(configSatisfies(view, { env: { A: '2' } }));
  assert.not.ok(configSatisfies(view, { env: { C: '1' } }));
  assert.not.ok(configSatisfies(view, { network: 'outbound' }));
  assert.not.ok(configSatisfies(undefined, { memoryMb: 256 }));
});

test.run();
