// The configuration commands of the `containerpub` CLI as real child processes against a running
// platform (in-process runner, process driver), on SQLite and PostgreSQL: env, secrets (values from
// stdin, never argv, never printed), config, diff, and containerpub.json + git metadata read by
// deploy and watch.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { packDirectory } from '../scripts/cli/pack.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction } from './support/archives.ts';
import { deployAndBuild } from './support/flows.ts';
import { cliEnv, newHome, runCli, startCli, type CliResult } from './support/cli.ts';

const t = await startTestPlatform({}, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-config-cli-'));
let dirCounter = 0;
const newDir = (label: string) => path.join(scratch, `${label}-${++dirCounter}`);

const SECRET = `s3cr3t-${randomBytes(12).toString('hex')}`;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

const READER = `
import { createHash } from 'node:crypto';
export default async (event, context) => {
  const v = process.env.API_TOKEN;
  return { tokenSha: v === undefined ? null : createHash('sha256').update(v).digest('hex'), greeting: process.env.GREETING ?? null, other: process.env.OTHER ?? null, version: context.version };
};`;

/** Every CLI output of this file, to check that none held the secret. */
const outputs: string[] = [];

async function tokenUser() {
  const api = await tp.newUser();
  const env = cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url, CONTAINERPUB_TOKEN: api.token });
  const cli = async (args: string[], input?: string): Promise<CliResult> => {
    const r = await runCli(args, env, { input });
    // what the CLI printed (its arguments may hold the secret: the test that refuses argv values passes it there)
    outputs.push(`containerpub ${args.slice(0, 2).join(' ')}\n${r.stdout}\n${r.stderr}`);
    return r;
  };
  return { api, env, cli };
}

const shown = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

function ok(r: CliResult): CliResult {
  assert.is(r.code, 0, shown(r));
  return r;
}

function oneLineError(r: CliResult, pattern: RegExp, code = 1) {
  assert.is(r.code, code, shown(r));
  const lines = r.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, `one line on stderr: ${shown(r)}`);
  assert.match(lines[0]!, pattern, shown(r));
}

const invoke = async (api: Awaited<ReturnType<TestPlatform['newUser']>>, id: string) => (await api.post(`/api/functions/${id}/invoke`, {})).body.result;
const latestVersion = async (api: Awaited<ReturnType<TestPlatform['newUser']>>, id: string) => (await api.get(`/api/functions/${id}`)).body.latestVersion as number;

// ---------------------------------------------------------------------------------------------
const envs = suite('cli: env');

envs('env set makes a live version with the variables (no build); ls shows them; unset removes one', async () => {
  const { api, cli } = await tokenUser();
  const d = await deployAndBuild(api, 'cfg-env', await makeNodeFunction(READER));
  const set = ok(await cli(['env', 'set', 'GREETING=hello world', 'OTHER=x=y', 'cfg-env']));
  assert.match(set.stdout, /cfg-env v2: setting GREETING, OTHER \(configuration change: the live code, no rebuild\)/);
  assert.match(set.stdout, /✔ cfg-env v2 is live/);
  assert.equal(await invoke(api, d.id), { tokenSha: null, greeting: 'hello world', other: 'x=y', version: 2 });
  const detail = await api.get(`/api/functions/${d.id}/deployments/2`);
  assert.is(detail.body.source, 'config');
  assert.not.match(detail.body.buildLogs, /unpacking/);

  const ls = ok(await cli(['env', 'ls', 'cfg-env']));
  assert.match(ls.stdout, /NAME\s+VALUE\nGREETING\s+hello world\nOTHER\s+x=y/);
  // the name may come first as well
  ok(await cli(['env', 'unset', 'cfg-env', 'OTHER']));
  const json = ok(await cli(['env', 'ls', 'cfg-env', '--json']));
  assert.equal(JSON.parse(json.stdout), { name: 'cfg-env', version: 3, env: { GREETING: 'hello world' } });
  assert.is((await invoke(api, d.id)).other, null);
});

envs('env: bad words are usage errors (no request); names the API refuses are one-line errors; no version is made', async () => {
  const { api, cli } = await tokenUser();
  const d = await deployAndBuild(api, 'cfg-env-bad', await makeNodeFunction(READER));
  oneLineError(await cli(['env', 'set', 'GREETING=x']), /env set needs <name>/, 2);
  oneLineError(await cli(['env', 'set', 'A=1', 'one-fn', 'other-fn']), /which function, "one-fn" or "other-fn"/, 2);
  oneLineError(await cli(['env', 'set', 'NOVALUE', 'cfg-env-bad']), /"NOVALUE" is not KEY=VALUE/, 2);
  oneLineError(await cli(['env', 'set', '1BAD=x', 'cfg-env-bad']), /"1BAD" is not a variable name/, 2);
  oneLineError(await cli(['env', 'remove', 'cfg-env-bad']), /unknown env action "remove"/, 2);
  // refused by the API (400), the message naming the variable
  oneLineError(await cli(['env', 'set', 'CONTAINERPUB_X=1', 'cfg-env-bad']), /^error: env\.CONTAINERPUB_X: /);
  oneLineError(await cli(['env', 'ls', 'no-such-fn']), /no function named "no-such-fn"/);
  assert.is(await latestVersion(api, d.id), 1);
});

// ---------------------------------------------------------------------------------------------
const secrets = suite('cli: secrets');

secrets('secrets set reads the value from stdin; the handler sees it; nothing the CLI prints holds it', async () => {
  const { api, cli } = await tokenUser();
  const d = await deployAndBuild(api, 'cfg-sec', await makeNodeFunction(READER));
  const set = ok(await cli(['secrets', 'set', 'API_TOKEN', 'cfg-sec'], `${SECRET}\n`));
  assert.match(set.stdout, /cfg-sec v2: setting the secret API_TOKEN/);
  assert.match(set.stdout, /✔ cfg-sec v2 is live/);
  assert.is((await invoke(api, d.id)).tokenSha, sha(SECRET), 'one trailing newline is not part of the value');

  const ls = ok(await cli(['secrets', 'ls', 'cfg-sec']));
  assert.match(ls.stdout, /NAME\nAPI_TOKEN/);
  assert.equal(JSON.parse(ok(await cli(['secrets', 'ls', 'cfg-sec', '--json'])).stdout), { name: 'cfg-sec', version: 2, secrets: ['API_TOKEN'] });
  const json = ok(await cli(['secrets', 'set', 'API_TOKEN', 'cfg-sec', '--json'], SECRET));
  assert.is(JSON.parse(json.stdout).version, 3);
  // a multi-line value (a PEM key) is taken whole
  const pem = `-----BEGIN KEY-----\n${SECRET}\n-----END KEY-----`;
  ok(await cli(['secrets', 'set', 'API_TOKEN', 'cfg-sec'], `${pem}\n`));
  assert.is((await invoke(api, d.id)).tokenSha, sha(pem));
  // everything else a user looks at
  ok(await cli(['history', 'cfg-sec', '--json']));
  ok(await cli(['config', 'cfg-sec']));
  ok(await cli(['config', 'cfg-sec', '--json']));
  ok(await cli(['diff', 'cfg-sec', '1', '4']));
  ok(await cli(['diff', 'cfg-sec', '2', '3', '--json']));
  ok(await cli(['logs', 'cfg-sec']));
});

secrets('a value is never taken from argv (and never repeated); an empty value is refused; unset removes it', async () => {
  const { api, cli } = await tokenUser();
  const d = await deployAndBuild(api, 'cfg-sec2', await makeNodeFunction(READER));
  const argv = await cli(['secrets', 'set', `API_TOKEN=${SECRET}`, 'cfg-sec2']);
  oneLineError(argv, /secret values are never taken from the command line .*"API_TOKEN" without "=…"/, 2);
  oneLineError(await cli(['secrets', 'set', 'API_TOKEN', 'cfg-sec2'], ''), /no value for API_TOKEN/, 2);
  oneLineError(await cli(['secrets', 'set', 'A', 'B', 'cfg-sec2'], SECRET), /one NAME at a time/, 2);
  oneLineError(await cli(['secrets', 'set', 'lower', 'cfg-sec2', 'x'], SECRET), /which function/, 2);
  assert.is(await latestVersion(api, d.id), 1, 'nothing was sent');
  ok(await cli(['secrets', 'set', 'API_TOKEN', 'cfg-sec2'], SECRET));
  const unset = ok(await cli(['secrets', 'unset', 'API_TOKEN', 'cfg-sec2']));
  assert.match(unset.stdout, /removing the secret API_TOKEN/);
  assert.is((await invoke(api, d.id)).tokenSha, null);
  assert.match(ok(await cli(['secrets', 'ls', 'cfg-sec2'])).stdout, /cfg-sec2 has no secrets/);
});

// ---------------------------------------------------------------------------------------------
const configs = suite('cli: config and diff');

configs('config KEY=VALUE… with units makes a version; config alone prints the settings; =default removes one', async () => {
  const { api, cli } = await tokenUser();
  const d = await deployAndBuild(api, 'cfg-lim', await makeNodeFunction(READER));
  const set = ok(await cli(['config', 'cfg-lim', 'memory=128', 'timeout=5s', 'min=0', 'max=2', 'concurrency=2', 'network=outbound']));
  assert.match(set.stdout, /✔ cfg-lim v2 is live/);
  const json = JSON.parse(ok(await cli(['config', 'cfg-lim', '--json'])).stdout);
  assert.equal(
    [json.version, json.memoryMb, json.timeoutMs, json.minInstances, json.maxInstances, json.concurrency, json.network],
    [2, 128, 5000, 0, 2, 2, 'outbound'],
  );
  const text = ok(await cli(['config', 'cfg-lim'])).stdout;
  assert.match(text, /cfg-lim v2/);
  assert.match(text, /memory\s+128 MiB/);
  assert.match(text, /timeout\s+5 s/);
  assert.match(text, /network\s+outbound/);
  ok(await cli(['config', 'cfg-lim', 'memory=default', 'timeout=1.5s']));
  const after = JSON.parse(ok(await cli(['config', 'cfg-lim', '--json'])).stdout);
  assert.is(after.memoryMb, tp.platform.config.runtime.memoryMb);
  assert.is(after.timeoutMs, 1500);
  assert.is(await latestVersion(api, d.id), 3);

  oneLineError(await cli(['config', 'cfg-lim', 'memory=lots']), /memory=lots: must be MiB/, 2);
  oneLineError(await cli(['config', 'cfg-lim', 'colour=blue']), /unknown setting "colour"/, 2);
  oneLineError(await cli(['config', 'cfg-lim', 'network=everywhere']), /must be none or outbound/, 2);
  oneLineError(await cli(['config', 'cfg-lim', 'memory=32']), /memoryMb/);
  oneLineError(await cli(['config', 'cfg-lim', 'min=3', 'max=2']), /minInstances \(3\) must not exceed maxInstances \(2\)/);
  assert.is(await latestVersion(api, d.id), 3, 'no version for a refused change');
});

configs('diff prints what changed between two versions, secrets by name only', async () => {
  const { api, cli } = await tokenUser();
  const d = await deployAndBuild(api, 'cfg-diff', await makeNodeFunction(READER));
  ok(await cli(['env', 'set', 'GREETING=hi', 'OTHER=1', 'cfg-diff']));
  ok(await cli(['secrets', 'set', 'API_TOKEN', 'cfg-diff'], SECRET));
  ok(await cli(['env', 'set', 'GREETING=hello', 'cfg-diff']));
  ok(await cli(['config', 'cfg-diff', 'memory=128']));
  const r = ok(await cli(['diff', 'cfg-diff', 'v1', '5']));
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines, [
    'cfg-diff v1 → v5',
    `code: unchanged (${d.built.sha256.slice(0, 12)})`,
    'config:',
    '  + env.GREETING = "hello"',
    '  + env.OTHER = "1"',
    '  ~ memoryMb: 256 → 128',
    '  + secrets.API_TOKEN (secret)',
  ]);
  const secretChanged = ok(await cli(['secrets', 'set', 'API_TOKEN', 'cfg-diff'], `${SECRET}-2`));
  assert.match(secretChanged.stdout, /v6 is live/);
  const s = ok(await cli(['diff', 'cfg-diff', '5', '6']));
  assert.match(s.stdout, /~ secrets.API_TOKEN \(secret value changed\)/);
  const none = ok(await cli(['diff', 'cfg-diff', '6', '6']));
  assert.match(none.stdout, /code: unchanged .*\nconfig: unchanged/);
  const json = JSON.parse(ok(await cli(['diff', 'cfg-diff', '2', '3', '--json'])).stdout);
  assert.equal(json.config.added, { 'secrets.API_TOKEN': '(secret)' });
  oneLineError(await cli(['diff', 'cfg-diff', 'x', '2']), /"x" is not a version/, 2);
  oneLineError(await cli(['diff', 'cfg-diff', '1', '99']), /version 99 does not exist/);
});

// ---------------------------------------------------------------------------------------------
const project = suite('cli: containerpub.json and git metadata');

function writeFunction(dir: string, source = READER, settings?: unknown): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fn', main: 'index.mjs', type: 'module' }));
  fs.writeFileSync(path.join(dir, 'index.mjs'), source);
  if (settings !== undefined) fs.writeFileSync(path.join(dir, 'containerpub.json'), JSON.stringify(settings, null, 2));
}

function git(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=Ada Lovelace', '-c', 'user.email=ada@example.com', '-c', 'commit.gpgsign=false', ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', HOME: scratch, GIT_CONFIG_NOSYSTEM: '1' },
  }).trim();
}

project('deploy takes the name and settings from containerpub.json (not packed) and the last commit as metadata', async () => {
  const { api, cli } = await tokenUser();
  const dir = newDir('project');
  writeFunction(dir, READER, { name: 'from-file', env: { GREETING: 'from json' }, memoryMb: 128, timeoutMs: 4000 });
  git(dir, 'init', '-q');
  git(dir, 'add', '.');
  git(dir, 'commit', '-q', '-m', 'First version: greet from the file');
  const head = git(dir, 'rev-parse', 'HEAD');
  assert.equal((await packDirectory(dir)).entries, ['index.mjs', 'package.json'], 'containerpub.json is not packed');

  const r = ok(await cli(['deploy', dir]));
  assert.match(r.stdout, /settings from containerpub.json: env, memoryMb, timeoutMs/);
  assert.match(r.stdout, /✔ from-file v1 is live/);
  const fn = (await api.get('/api/functions')).body.functions.find((f: { name: string }) => f.name === 'from-file');
  const v1 = (await api.get(`/api/functions/${fn.id}/deployments/1`)).body;
  assert.equal(v1.metadata, { gitSha: head, message: 'First version: greet from the file', author: 'Ada Lovelace <ada@example.com>' });
  assert.equal([v1.config.env, v1.config.memoryMb, v1.config.timeoutMs], [{ GREETING: 'from json' }, 128, 4000]);
  assert.is((await invoke(api, fn.id)).greeting, 'from json');

  // --name wins over the file; a directory outside any repository has no metadata
  const plain = newDir('plain');
  writeFunction(plain, READER, { name: 'ignored-name' });
  ok(await cli(['deploy', plain, '--name', 'flag-name']));
  const flagFn = (await api.get('/api/functions')).body.functions.find((f: { name: string }) => f.name === 'flag-name');
  assert.ok(flagFn, 'deployed under the --name');
  assert.is((await api.get(`/api/functions/${flagFn.id}/deployments/1`)).body.metadata, null);
});

project('a bad containerpub.json is refused before any request, without repeating secret-looking values', async () => {
  const { cli } = await tokenUser();
  const withSecrets = newDir('with-secrets');
  writeFunction(withSecrets, READER, { name: 'never', secrets: { API_TOKEN: SECRET } });
  oneLineError(await cli(['deploy', withSecrets]), /"secrets" do not belong in containerpub.json/);
  const unknown = newDir('unknown-key');
  writeFunction(unknown, READER, { name: 'never', memory: 128 });
  oneLineError(await cli(['deploy', unknown]), /unknown key "memory"/);
  const notJson = newDir('not-json');
  writeFunction(notJson);
  fs.writeFileSync(path.join(notJson, 'containerpub.json'), '{ name: ');
  oneLineError(await cli(['deploy', notJson]), /containerpub.json is not valid JSON/);
  const noName = newDir('no-name');
  writeFunction(noName, READER, { env: { A: 'b' } });
  // no name anywhere in containerpub.json: package.json's ("fn") names it
  assert.match(ok(await cli(['deploy', noName])).stdout, /✔ fn v\d+ is live/);
  const badName = newDir('bad-name');
  writeFunction(badName, READER, { name: 'Bad_Name' });
  oneLineError(await cli(['deploy', badName]), /invalid function name "Bad_Name" \(the "name" of .*containerpub.json\)/, 2);
});

project('watch: a save that changes only containerpub.json is a configuration change (no rebuild); a code save deploys', async () => {
  const { api, env } = await tokenUser();
  const dir = newDir('watched');
  writeFunction(dir, READER, { env: { GREETING: 'one' } });
  const w = startCli(['watch', dir, '--name', 'cfg-watch'], env);
  try {
    await w.waitFor(/watching for changes \(last deployed v1/, { timeoutMs: 60_000 });
    const fn = (await api.get('/api/functions')).body.functions.find((f: { name: string }) => f.name === 'cfg-watch');
    assert.is((await invoke(api, fn.id)).greeting, 'one');

    let from = w.output().length;
    fs.writeFileSync(path.join(dir, 'containerpub.json'), JSON.stringify({ env: { GREETING: 'two' } }));
    await w.waitFor(/cfg-watch v2: containerpub.json changed: configuration change/, { from, timeoutMs: 30_000 });
    await w.waitFor(/✔ cfg-watch v2 is live/, { from, timeoutMs: 60_000 });
    const v2 = (await api.get(`/api/functions/${fn.id}/deployments/2`)).body;
    assert.is(v2.source, 'config');
    assert.match(v2.buildLogs, /no build/);
    assert.is((await invoke(api, fn.id)).greeting, 'two');

    from = w.output().length;
    fs.writeFileSync(path.join(dir, 'index.mjs'), `${READER}\n// edited`);
    await w.waitFor(/✔ cfg-watch v3 is live/, { from, timeoutMs: 60_000 });
    const v3 = (await api.get(`/api/functions/${fn.id}/deployments/3`)).body;
    assert.is(v3.source, 'deploy');
    assert.equal(v3.config.env, { GREETING: 'two' });
  } finally {
    await w.stop();
  }
  // restarted, with the file as the live version has it: nothing to do
  const again = startCli(['watch', dir, '--name', 'cfg-watch'], env);
  try {
    await again.waitFor(/unchanged \(sha256 [0-9a-f]{12}\), nothing to deploy/, { timeoutMs: 60_000 });
  } finally {
    await again.stop();
  }
});

project('no CLI output of this file held the secret', () => {
  assert.ok(outputs.length > 30);
  for (const o of outputs) assert.not.ok(o.includes(SECRET), `the secret appeared in: ${o.split('\n')[0]}`);
});

project.after(async () => {
  await tp.close();
  fs.rmSync(scratch, { recursive: true, force: true });
});

envs.run();
secrets.run();
configs.run();
project.run();
