// The `containerpub` CLI end to end: the real command as a child process against a real running
// platform (API, S3, in-process runner with the process driver). Deploy and invoke, history,
// rollback, warm instances, watch mode, and the errors a newcomer meets first. Packing is also
// checked directly.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { WarmInstance } from '../scripts/cli/api-client.ts';
import { packDirectory } from '../scripts/cli/pack.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { waitFor } from './support/services.ts';
import {
  cliEnv,
  closedPort,
  handlerSource,
  newHome,
  repoRoot,
  runCli,
  startCli,
  writeFunctionDir,
  type CliResult,
} from './support/cli.ts';

// A small server-side limit so "refused before the upload" is cheap to reach.
const SERVER_MAX_BYTES = 256 * 1024;
// FUNCTIONS_DOMAIN only adds the host form of each URL here (no request is sent to it).
const FUNCTIONS_DOMAIN = 'fn.example.test';
const t = await startTestPlatform({ MAX_ARCHIVE_BYTES: String(SERVER_MAX_BYTES), FUNCTIONS_DOMAIN }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-cli-'));
let dirCounter = 0;
const newDir = (label: string) => path.join(scratch, `${label}-${++dirCounter}`);

/** A user known to the platform, and a CLI environment that carries its token. */
async function tokenUser() {
  const api = await tp.newUser();
  const env = cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url, CONTAINERPUB_TOKEN: api.token });
  return { api, env, cli: (...args: string[]) => runCli(args, env) };
}

function oneLineError(r: CliResult, pattern: RegExp, code = 1) {
  const shown = `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  assert.is(r.code, code, shown);
  const lines = r.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, `one line on stderr: ${shown}`);
  assert.match(lines[0], pattern, shown);
}

async function rejectsWith(work: () => Promise<unknown>, pattern: RegExp) {
  try {
    await work();
  } catch (err) {
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
}

type UserApi = Awaited<ReturnType<TestPlatform['newUser']>>;
interface ListedFunction {
  id: string;
  name: string;
  latestVersion: number;
  activeVersion: number | null;
  access: string;
  url: string;
  hostUrl?: string | null;
}
const functionsOf = async (api: UserApi) => (await api.get('/api/functions')).body.functions as ListedFunction[];
const functionOf = async (api: UserApi, name: string) => (await functionsOf(api)).find((f) => f.name === name)!;
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---------------------------------------------------------------------------------------------
const packing = suite('pack: deterministic archives');

packing('the same files give the same sha256, whatever their mtimes or creation order', async () => {
  const a = newDir('pack-a');
  const b = newDir('pack-b');
  fs.mkdirSync(path.join(a, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(a, 'index.mjs'), 'export default async () => 1;\n');
  fs.writeFileSync(path.join(a, 'lib', 'util.mjs'), 'export const x = 1;\n');
  // b: the same content, written in the other order, with other timestamps
  fs.mkdirSync(path.join(b, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(b, 'lib', 'util.mjs'), 'export const x = 1;\n');
  fs.writeFileSync(path.join(b, 'index.mjs'), 'export default async () => 1;\n');
  fs.utimesSync(path.join(b, 'index.mjs'), new Date('2011-01-01'), new Date('2011-01-01'));
  fs.utimesSync(path.join(b, 'lib'), new Date('2012-01-01'), new Date('2012-01-01'));

  const first = await packDirectory(a);
  const again = await packDirectory(a);
  const other = await packDirectory(b);
  assert.is(again.sha256, first.sha256);
  assert.is(other.sha256, first.sha256);
  assert.equal(first.entries, ['index.mjs', 'lib/', 'lib/util.mjs']);
  // the gzip header carries no timestamp
  assert.equal([...first.buffer.subarray(4, 8)], [0, 0, 0, 0]);

  fs.writeFileSync(path.join(b, 'index.mjs'), 'export default async () => 2;\n');
  assert.is.not((await packDirectory(b)).sha256, first.sha256);
});

packing('.containerpubignore (gitignore syntax) and .git are left out', async () => {
  const dir = newDir('pack-ignore');
  fs.mkdirSync(path.join(dir, '.git', 'objects'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'build'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
  fs.writeFileSync(path.join(dir, '.git', 'HEAD'), 'ref: refs/heads/main\n');
  fs.writeFileSync(path.join(dir, '.git', 'objects', 'x'), 'x');
  fs.writeFileSync(path.join(dir, 'build', 'out.js'), 'x');
  fs.writeFileSync(path.join(dir, 'debug.log'), 'x');
  fs.writeFileSync(path.join(dir, 'src', 'keep.log'), 'x');
  fs.writeFileSync(path.join(dir, 'src', 'a.mjs'), 'x');
  fs.writeFileSync(path.join(dir, 'index.mjs'), 'x');
  fs.writeFileSync(path.join(dir, '.containerpubignore'), '# comments are fine\nbuild/\n*.log\n!src/keep.log\n');
  const packed = await packDirectory(dir);
  assert.equal(packed.entries, ['index.mjs', 'src/', 'src/a.mjs', 'src/keep.log']);
  assert.is(packed.files, 3);
});

packing('an empty directory, or one where everything is ignored, is refused', async () => {
  const empty = newDir('pack-empty');
  fs.mkdirSync(path.join(empty, 'only-dirs'), { recursive: true });
  await rejectsWith(() => packDirectory(empty), /nothing to deploy/);
  const ignored = newDir('pack-all-ignored');
  fs.mkdirSync(ignored);
  fs.writeFileSync(path.join(ignored, 'a.txt'), 'x');
  fs.writeFileSync(path.join(ignored, '.containerpubignore'), '*\n');
  await rejectsWith(() => packDirectory(ignored), /nothing to deploy: it is empty once ignored files are left out/);
});

packing('an archive over the size limit is refused while packing', async () => {
  const dir = newDir('pack-big');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'random.bin'), randomBytes(200 * 1024)); // incompressible
  await rejectsWith(() => packDirectory(dir, { maxBytes: 100 * 1024 }), /packs to more than 100 KiB, the size limit/);
});

// ---------------------------------------------------------------------------------------------
const cli = suite('cli: register, deploy, invoke, history, rollback');

const home = newHome(scratch);
const env = cliEnv(home, { CONTAINERPUB_URL: tp.url });
const email = `cli-${process.pid}-${Date.now()}@example.com`;
const helloDir = newDir('hello');

cli('register reads the answers from stdin and saves the token with mode 0600', async () => {
  const r = await runCli(['register'], env, { input: `${email}\ncorrect horse battery\n` });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /registered and logged in as/);
  const file = path.join(home, '.config', 'containerpub', 'credentials.json');
  assert.is(fs.statSync(file).mode & 0o777, 0o600);
  assert.is(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
  const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.is(saved.url, tp.url);
  assert.type(saved.token, 'string');
  assert.not.match(r.stdout + r.stderr, saved.token, 'the token is never printed');
  // login with flags, in another home, gets a working token too
  const other = cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url });
  const login = await runCli(['login', '--email', email, '--password', 'correct horse battery'], other);
  assert.is(login.code, 0, login.stderr);
  const wrong = await runCli(['login', '--email', email, '--password', 'not the password'], other);
  oneLineError(wrong, /^error: wrong email or password$/, 3);
});

cli('deploy packs, uploads, follows the build and says the version is live; invoke answers', async () => {
  writeFunctionDir(helloDir, 'one');
  const r = await runCli(['deploy', helloDir, '--name', 'hello'], env);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /packed 2 files/);
  assert.match(r.stdout, /hello v1: new function; uploading/);
  assert.match(r.stdout, /✔ hello v1 is live/);

  const inv = await runCli(['invoke', 'hello', '--data', '{"name":"ada"}'], env);
  assert.is(inv.code, 0, inv.stderr);
  assert.equal(JSON.parse(inv.stdout), { tag: 'one', event: { name: 'ada' }, version: 1 });

  const eventFile = path.join(scratch, 'event.json');
  fs.writeFileSync(eventFile, '{"from":"file"}');
  const json = await runCli(['invoke', 'hello', '--file', eventFile, '--json'], env);
  assert.is(json.code, 0, json.stderr);
  const body = JSON.parse(json.stdout);
  assert.equal(body.result.event, { from: 'file' });
  assert.is(body.version, 1);
  assert.type(body.requestId, 'string');
});

cli('deploy --json prints one JSON document on stdout and the messages on stderr', async () => {
  fs.writeFileSync(path.join(helloDir, 'index.mjs'), handlerSource('two'));
  const r = await runCli(['deploy', helloDir, '--name', 'hello', '--json'], env);
  assert.is(r.code, 0, r.stderr);
  const outcome = JSON.parse(r.stdout);
  assert.is(outcome.version, 2);
  assert.is(outcome.status, 'active');
  assert.is(outcome.live, true);
  assert.is(outcome.sha256, (await packDirectory(helloDir)).sha256);
  assert.match(r.stderr, /✔ hello v2 is live/);
});

cli('history is a table, newest first, with the live version marked', async () => {
  const r = await runCli(['history', 'hello'], env);
  assert.is(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0], /VERSION\s+STATUS\s+LIVE\s+TAGS\s+DEPLOYED\s+SIZE\s+SHA256/);
  assert.match(lines[1], /^\* v2\s+active\s+live\s/);
  assert.match(lines[2], /^\s+v1\s+active\s+\d/);
  const ls = await runCli(['ls'], env);
  assert.match(ls.stdout, /NAME\s+LIVE VERSION\s+LATEST\s+STATUS\s+ACCESS\s+UPDATED/);
  assert.match(ls.stdout, /hello\s+v2\s+v2\s+active\s+private\s/);
});

cli('rollback --to 1 makes the next invoke answer from v1; history moves the marker', async () => {
  const r = await runCli(['rollback', 'hello', '--to', '1'], env);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /✔ hello v1 is live \(was v2\)/);
  const inv = await runCli(['invoke', 'hello'], env);
  assert.is(JSON.parse(inv.stdout).tag, 'one');
  assert.match(inv.stderr, /hello v1/);
  const h = await runCli(['history', 'hello', '--json'], env);
  const live = JSON.parse(h.stdout).deployments.filter((d: { isActive: boolean }) => d.isActive);
  assert.equal(live.map((d: { version: number }) => d.version), [1]);
  // a new deploy after a rollback is live again, and the CLI says which
  const again = await runCli(['deploy', helloDir, '--name', 'hello'], env);
  assert.match(again.stdout, /✔ hello v3 is live/);
  const logs = await runCli(['logs', 'hello'], env);
  assert.is(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, /v1\s+rolled_back/);
  assert.match(logs.stdout, /Recent invocations/);
});

cli('instances shows the warm instance an invoke ran on; a new live version is pre-warmed', async () => {
  const { api, cli: run } = await tokenUser();
  const dir = newDir('warm');
  writeFunctionDir(dir, 'warm');
  const deployed = await run('deploy', dir, '--name', 'warm');
  assert.is(deployed.code, 0, deployed.stdout + deployed.stderr);
  const inv = await run('invoke', 'warm');
  assert.is(inv.code, 0, inv.stderr);

  // Pre-warm may or may not have started v1's instance before the invoke: either way the invoke
  // ran on the only one (it takes a starting instance rather than start another), and its answer
  // was sent only once the instance was released.
  const r = await run('instances', 'warm');
  assert.is(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.is(lines.length, 2, r.stdout);
  assert.match(lines[0], /^ID\s+VERSION\s+STATE\s+STARTED\s+LAST USED\s+INVOCATIONS$/);
  assert.match(lines[1], /^i-[0-9a-f]{12}\s+v1\s+idle\s+\d+s ago\s+\d+s ago\s+1$/);

  const json = await run('instances', 'warm', '--json');
  assert.is(json.code, 0, json.stderr);
  const { instances } = JSON.parse(json.stdout) as { instances: WarmInstance[] };
  assert.is(instances.length, 1, json.stdout);
  assert.is(instances[0].id, lines[1].split(/\s+/)[0]);
  assert.is(instances[0].version, 1);
  assert.is(instances[0].state, 'idle');
  assert.is(instances[0].invocations, 1);
  assert.ok(Date.parse(instances[0].lastUsedAt ?? '') >= Date.parse(instances[0].startedAt), json.stdout);

  // v2 going live starts an instance of it with nothing run on it yet: "-" for LAST USED
  fs.writeFileSync(path.join(dir, 'index.mjs'), handlerSource('warm-2'));
  const again = await run('deploy', dir, '--name', 'warm');
  assert.match(again.stdout, /✔ warm v2 is live/, again.stdout + again.stderr);
  const fnId = (await functionsOf(api))[0].id;
  const prewarmed = await waitFor('a ready pre-warmed v2 instance', async () => {
    const listed = (await api.get(`/api/functions/${fnId}/instances`)).body.instances as WarmInstance[];
    return listed.find((i) => i.version === 2 && i.state === 'idle');
  });
  assert.is(prewarmed.invocations, 0);
  assert.is(prewarmed.lastUsedAt, null);
  const after = await run('instances', 'warm');
  assert.is(after.code, 0, after.stderr);
  assert.match(after.stdout, new RegExp(`^${prewarmed.id}\\s+v2\\s+idle\\s+\\d+s ago\\s+-\\s+0$`, 'm'));
});

cli('the bin.js entry point is executable and runs the same CLI', async () => {
  const bin = path.join(repoRoot, 'scripts/cli/bin.js');
  assert.ok(fs.statSync(bin).mode & 0o100, 'bin.js is executable');
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(bin, ['--help'], { env: cliEnv(newHome(scratch)), encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /Usage: containerpub <command>/);
});

// ---------------------------------------------------------------------------------------------
const failures = suite('cli: the errors a newcomer meets');

failures('no such directory: one line, exit 1', async () => {
  const { cli: run } = await tokenUser();
  oneLineError(await run('deploy', path.join(scratch, 'does-not-exist'), '--name', 'x'), /^error: no such directory: .*does-not-exist$/);
});

failures('API down: one line naming the URL, exit 1', async () => {
  const url = `http://127.0.0.1:${await closedPort()}`;
  const r = await runCli(['ls'], cliEnv(newHome(scratch), { CONTAINERPUB_URL: url, CONTAINERPUB_TOKEN: 'x' }));
  oneLineError(r, new RegExp(`^error: cannot reach the ContainerPub API at ${url} \\(is it running\\?\\)$`));
});

failures('https:// to a port that speaks plain HTTP: one line, not OpenSSL internals, exit 1', async () => {
  const url = tp.url.replace('http://', 'https://');
  const r = await runCli(['ls'], cliEnv(newHome(scratch), { CONTAINERPUB_URL: url, CONTAINERPUB_TOKEN: 'x' }));
  oneLineError(r, new RegExp(`^error: cannot reach the ContainerPub API at ${url} \\(the TLS handshake failed: does it serve HTTPS on that port\\?\\)$`));
});

failures('not logged in (no saved login, no CONTAINERPUB_TOKEN): one line, exit 3', async () => {
  const r = await runCli(['ls'], cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url }));
  oneLineError(r, /^error: not logged in: run "containerpub login" \(or set CONTAINERPUB_TOKEN\)$/, 3);
});

failures('wrong name: one line pointing at ls, exit 1', async () => {
  const { cli: run } = await tokenUser();
  const commands = [
    ['invoke', 'nosuch'],
    ['history', 'nosuch'],
    ['rollback', 'nosuch', '--to', '1'],
    ['logs', 'nosuch'],
    ['instances', 'nosuch'],
    ['url', 'nosuch'],
    ['access', 'nosuch', 'public'],
    ['keys', 'ls', 'nosuch'],
    ['keys', 'create', 'nosuch'],
    ['keys', 'rm', 'nosuch', 'k-1'],
  ];
  for (const r of await Promise.all(commands.map((args) => run(...args)))) {
    oneLineError(r, /^error: no function named "nosuch" \(see "containerpub ls"\)$/);
  }
});

failures('usage errors exit 2 with a pointer to --help', async () => {
  const { cli: run } = await tokenUser();
  // no containerpub.json, a package.json without "name", a directory name with no letter or digit
  const unnameable = path.join(newDir('unnamed'), '___');
  fs.mkdirSync(unnameable, { recursive: true });
  fs.writeFileSync(path.join(unnameable, 'package.json'), '{"main":"index.mjs"}');
  const cases: [string[], RegExp][] = [
    [['invoke', 'x', '--data', '{not json'], /^error: --data is not valid JSON.*containerpub invoke --help/],
    [['deploy', unnameable], /^error: deploy needs --name/],
    [['deploy', scratch, '--name', 'Not_Valid'], /^error: invalid function name "Not_Valid"/],
    [['rollback', 'x', '--to', 'latest'], /--to must be a positive integer/],
    [['frobnicate'], /^error: unknown command "frobnicate"/],
    [['ls', '--bogus'], /^error: unknown option "--bogus"/],
    [['instances'], /^error: instances needs <name> \(see "containerpub instances --help"\)$/],
    [['url'], /^error: url needs <name> \(see "containerpub url --help"\)$/],
    [['url', 'a', 'b'], /^error: unexpected argument "b"/],
    [['access', 'x'], /^error: access needs <public\|key\|private>/],
    [['access', 'x', 'open'], /^error: unknown access "open" \(public, key or private\) \(see "containerpub access --help"\)$/],
    [['keys', 'ls'], /^error: keys needs <name>/],
    [['keys', 'drop', 'x'], /^error: unknown keys action "drop" \(create, ls or rm\)/],
    [['keys', 'rm', 'x'], /^error: keys rm needs <keyId>, which "containerpub keys ls x" lists/],
    [['keys', 'ls', 'x', 'extra'], /^error: unexpected argument "extra"/],
    [['keys', 'ls', 'x', '--key-name', 'ci'], /^error: --key-name goes with keys create/],
    [['keys', 'create', 'x', '--key-name', ' '], /^error: --key-name must not be empty/],
  ];
  const results = await Promise.all(cases.map(([args]) => run(...args)));
  results.forEach((r, i) => oneLineError(r, cases[i][1], 2));
  const help = await run('deploy', '--help');
  assert.is(help.code, 0);
  assert.match(help.stdout, /Usage: containerpub deploy <dir> \[--name <name>\]/);
  const general = await run('--help');
  assert.match(general.stdout, /^  instances\s+show a function's warm instances$/m);
  for (const [name, usage] of [
    ['url', 'url <name>'],
    ['access', 'access <name> public|key|private'],
    ['keys', 'keys create <name> [--key-name <n>] | keys ls <name> | keys rm <name> <keyId>'],
  ]) {
    assert.match(general.stdout, new RegExp(`^  ${name}\\s+\\S`, 'm'), `${name} is listed in the general help`);
    const one = await run(name, '--help');
    assert.is(one.code, 0, one.stderr);
    assert.ok(one.stdout.startsWith(`Usage: containerpub ${usage}\n`), one.stdout);
  }
});

failures('an empty directory is refused before any request: no function is created', async () => {
  const { api, cli: run } = await tokenUser();
  const dir = newDir('empty');
  fs.mkdirSync(dir);
  oneLineError(await run('deploy', dir, '--name', 'empty'), /^error: .* has nothing to deploy: it is empty$/);
  assert.equal(await functionsOf(api), []);
});

failures('an archive over the server limit is refused before the upload: no version is used', async () => {
  const { api, cli: run } = await tokenUser();
  const dir = newDir('too-big');
  writeFunctionDir(dir, 'big');
  fs.writeFileSync(path.join(dir, 'noise.bin'), randomBytes(SERVER_MAX_BYTES + 1024));
  oneLineError(await run('deploy', dir, '--name', 'big'), /^error: the server refused the archive before upload: archive is \d+ bytes, over the limit of 262144 bytes$/);
  assert.equal(await functionsOf(api), []);
  // the local limit refuses it before even asking
  oneLineError(await run('deploy', dir, '--name', 'big', '--max-bytes', '100000'), /packs to more than 97.7 KiB, the size limit/);
});

failures('a failing build exits 1 and prints the error and the tail of the build log', async () => {
  const { cli: run } = await tokenUser();
  const dir = newDir('no-handler');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'README.md'), 'no code here\n');
  const r = await run('deploy', dir, '--name', 'broken');
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /✘ broken v1 failed: no handler found/);
  assert.match(r.stderr, /build log \(last \d+ lines\):/);
  assert.match(r.stderr, /│ \[containerpub\] build failed: no handler found/);
  // nothing live, so nothing warm
  const none = await run('instances', 'broken');
  assert.is(none.code, 0, none.stderr);
  assert.is(none.stdout, 'no warm instances of broken (it has no live version yet)\n');
  const noneJson = await run('instances', 'broken', '--json');
  assert.equal(JSON.parse(noneJson.stdout), { instances: [] });
});

// ---------------------------------------------------------------------------------------------
const tokenCmds = suite('cli: tokens and logout');

tokenCmds('tokens create prints only the token on stdout, once; it works; ls lists it without secrets; rm revokes it', async () => {
  const { api, env: userEnv, cli: run } = await tokenUser();
  const made = await run('tokens', 'create', '--name', 'ci', '--days', '7');
  assert.is(made.code, 0, made.stderr);
  const token = made.stdout.trim();
  assert.match(token, /^cp_[A-Za-z0-9_-]+$/, 'stdout is the token alone');
  assert.match(made.stderr, /token "ci" created .*shown only this once/);
  assert.is((await api.withToken(token).get('/api/functions')).status, 200);

  const ls = await run('tokens', 'ls');
  assert.is(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /ID\s+NAME\s+CREATED\s+LAST USED\s+EXPIRES/);
  assert.match(ls.stdout, /^\*\s+\S+\s+login\s/m, 'the token in use is marked');
  assert.match(ls.stdout, /\sci\s+\d+s ago\s+(\d+s ago|never)\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/m);
  assert.not.ok(ls.stdout.includes(token) || ls.stdout.includes(api.token), 'no secret in the list');
  const listed = JSON.parse((await run('tokens', 'ls', '--json')).stdout).tokens as { id: string; name: string; expiresAt: string }[];
  const ci = listed.find((t) => t.name === 'ci')!;
  assert.ok(Math.abs(Date.parse(ci.expiresAt) - (Date.now() + 7 * 86_400_000)) < 60_000, ci.expiresAt);

  const rm = await run('tokens', 'rm', ci.id);
  assert.is(rm.code, 0, rm.stderr);
  assert.match(rm.stdout, new RegExp(`✔ token ${ci.id} revoked`));
  assert.is((await api.withToken(token).get('/api/functions')).status, 401);
  oneLineError(await run('tokens', 'rm', ci.id), /^error: token not found$/);
  oneLineError(await runCli(['tokens', 'create'], userEnv), /^error: tokens create needs --name/, 2);
  oneLineError(await runCli(['tokens', 'drop'], userEnv), /^error: unknown tokens action "drop"/, 2);
  oneLineError(await runCli(['tokens', 'create', '--name', 'x', '--days', '0'], userEnv), /^error: --days must be a positive integer/, 2);
});

tokenCmds('logout revokes the saved token and removes the credentials file; a second logout has nothing to do', async () => {
  const logoutHome = newHome(scratch);
  const logoutEnv = cliEnv(logoutHome, { CONTAINERPUB_URL: tp.url });
  const mail = `logout-${process.pid}-${Date.now()}@example.com`;
  assert.is((await runCli(['register', '--email', mail, '--password', 'correct horse battery'], logoutEnv)).code, 0);
  const file = path.join(logoutHome, '.config', 'containerpub', 'credentials.json');
  const { token } = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.is((await tp.http.get('/api/functions', { token })).status, 200);

  const out = await runCli(['logout'], logoutEnv);
  assert.is(out.code, 0, out.stderr);
  assert.match(out.stdout, /✔ logged out of .*: the token is revoked/);
  assert.not.ok(fs.existsSync(file), 'credentials removed');
  assert.is((await tp.http.get('/api/functions', { token })).status, 401);

  const again = await runCli(['logout'], logoutEnv);
  assert.is(again.code, 0, again.stderr);
  assert.match(again.stdout, /not logged in/);
  oneLineError(await runCli(['tokens', 'ls'], logoutEnv), /^error: not logged in/, 3);
});

tokenCmds('logout with CONTAINERPUB_TOKEN revokes that token and says the variable is still set', async () => {
  const { api, cli: run } = await tokenUser();
  const out = await run('logout');
  assert.is(out.code, 0, out.stderr);
  assert.match(out.stderr, /CONTAINERPUB_TOKEN is still set/);
  assert.is((await api.get('/api/functions')).status, 401);
  // a token that no longer works: logged out all the same
  const stale = await run('logout');
  assert.is(stale.code, 0, stale.stderr);
  assert.match(stale.stdout, /the token no longer worked/);
});

// ---------------------------------------------------------------------------------------------
const endpoints = suite('cli: url, access and keys');

/** A deployed event function `name` (writeFunctionDir's handler), live at v1. */
async function deployedFunction(run: (...args: string[]) => Promise<CliResult>, name: string) {
  const dir = newDir(name);
  writeFunctionDir(dir, name);
  const r = await run('deploy', dir, '--name', name);
  assert.is(r.code, 0, r.stdout + r.stderr);
  return r;
}

/** POSTs `event` as JSON to an endpoint URL with real fetch. */
async function callEndpoint(url: string, event: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(event) });
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body, headers: res.headers };
}

endpoints('deploy prints the URL once the version is live; url prints it, and the host form on a second line', async () => {
  const { api, cli: run } = await tokenUser();
  const me = (await api.get('/api/auth/me')).body as { handle: string };
  assert.type(me.handle, 'string');
  const deployed = await deployedFunction(run, 'ep');
  const fn = await functionOf(api, 'ep');
  const expected = `${tp.url}/fn/${me.handle}/ep`;
  assert.is(fn.url, expected);
  assert.type(fn.hostUrl, 'string');
  assert.ok(fn.hostUrl!.startsWith(`http://ep--${me.handle}.${FUNCTIONS_DOMAIN}`), fn.hostUrl!);
  assert.match(
    deployed.stdout,
    new RegExp(`✔ ep v1 is live\\n  ${escapeRe(expected)} \\(access: private\\)\\n  ${escapeRe(fn.hostUrl!)}\\n`),
    deployed.stdout,
  );

  const url = await run('url', 'ep');
  assert.is(url.code, 0, url.stderr);
  assert.is(url.stdout, `${expected}\n${fn.hostUrl}\n`);
  assert.is(url.stderr, '');
  const json = await run('url', 'ep', '--json');
  assert.is(json.code, 0, json.stderr);
  assert.equal(JSON.parse(json.stdout), { url: expected, hostUrl: fn.hostUrl });

  // the URL printed is the one that answers (private: with the owner's token)
  const called = await callEndpoint(expected, { from: 'endpoint' }, { authorization: `Bearer ${api.token}` });
  assert.is(called.status, 200, JSON.stringify(called.body));
  assert.equal(called.body, { tag: 'ep', event: { from: 'endpoint' }, version: 1 });

  // --json: the outcome carries the URL and the access
  const dir = newDir('ep-json');
  writeFunctionDir(dir, 'ep-2');
  const j = await run('deploy', dir, '--name', 'ep', '--json');
  assert.is(j.code, 0, j.stderr);
  const outcome = JSON.parse(j.stdout);
  assert.is(outcome.version, 2);
  assert.is(outcome.url, expected);
  assert.is(outcome.hostUrl, fn.hostUrl);
  assert.is(outcome.access, 'private');
  assert.match(j.stderr, new RegExp(`✔ ep v2 is live\\n  ${escapeRe(expected)} `));
});

endpoints('access public|key|private changes who the endpoint lets in, as the API shows', async () => {
  const { api, cli: run } = await tokenUser();
  await deployedFunction(run, 'gate');
  const { id, url } = await functionOf(api, 'gate');
  const anonymous = () => callEndpoint(url, { n: 1 });

  const closed = await anonymous();
  assert.is(closed.status, 401, 'private by default');
  assert.is(closed.headers.get('x-containerpub-error'), 'unauthorized');

  const pub = await run('access', 'gate', 'public');
  assert.is(pub.code, 0, pub.stderr);
  assert.ok(pub.stdout.startsWith(`✔ gate is public (was private): anyone can call it\n  ${url}\n`), pub.stdout);
  assert.is((await api.get(`/api/functions/${id}`)).body.access, 'public');
  const open = await anonymous();
  assert.is(open.status, 200, JSON.stringify(open.body));
  assert.equal(open.body.event, { n: 1 });
  const ls = await run('ls');
  assert.match(ls.stdout, /^gate\s+v1\s+v1\s+active\s+public\s+\d+s ago$/m, ls.stdout);

  const same = await run('access', 'gate', 'public');
  assert.match(same.stdout, /^✔ gate is public \(unchanged\)/);

  const key = await run('access', 'gate', 'key', '--json');
  assert.is(key.code, 0, key.stderr);
  assert.equal(JSON.parse(key.stdout), { name: 'gate', access: 'key', previousAccess: 'public', url, hostUrl: (await functionOf(api, 'gate')).hostUrl });
  assert.is((await api.get(`/api/functions/${id}`)).body.access, 'key');
  const keyed = await anonymous();
  assert.is(keyed.status, 401);
  assert.is(keyed.headers.get('x-containerpub-error'), 'unauthorized');
  assert.is((await callEndpoint(url, {}, { authorization: `Bearer ${api.token}` })).status, 200, "the owner's token works too");

  const priv = await run('access', 'gate', 'private');
  assert.is(priv.code, 0, priv.stderr);
  assert.match(priv.stdout, /^✔ gate is private \(was key\): only your own API token is accepted/);
  assert.is((await api.get(`/api/functions/${id}`)).body.access, 'private');
  assert.is((await anonymous()).status, 401);
});

endpoints('keys create prints the key once; it opens the endpoint; ls lists it without the secret; rm revokes it', async () => {
  const { api, cli: run } = await tokenUser();
  await deployedFunction(run, 'vault');
  const { id, url } = await functionOf(api, 'vault');
  assert.is((await run('access', 'vault', 'key')).code, 0);

  const made = await run('keys', 'create', 'vault', '--key-name', 'ci');
  assert.is(made.code, 0, made.stderr);
  const key = made.stdout.trim();
  assert.match(key, /^fk_\S+$/, 'stdout is the key alone');
  assert.match(made.stderr, /^✔ key "ci" created for vault \(id \S+\); it is shown only this once and will not be shown again:$/m);
  assert.not.match(made.stderr, /note:/, 'no note: the function asks for keys');

  const withHeader = await callEndpoint(url, { via: 'header' }, { 'x-function-key': key });
  assert.is(withHeader.status, 200, JSON.stringify(withHeader.body));
  assert.equal(withHeader.body.event, { via: 'header' });
  assert.is((await callEndpoint(url, {}, { authorization: `Bearer ${key}` })).status, 200);
  const wrong = await callEndpoint(url, {}, { 'x-function-key': `${key.slice(0, -2)}xx` });
  assert.is(wrong.status, 401);

  const other = (await run('keys', 'create', 'vault')).stdout.trim();
  assert.match(other, /^fk_\S+$/);

  const ls = await run('keys', 'ls', 'vault');
  assert.is(ls.code, 0, ls.stderr);
  const lines = ls.stdout.trimEnd().split('\n');
  assert.match(lines[0], /^ID\s+NAME\s+CREATED\s+LAST USED$/);
  assert.is(lines.length, 3, ls.stdout);
  assert.match(ls.stdout, /^\S+\s+ci\s+\d+s ago\s+(\d+s ago|never)$/m);
  assert.match(ls.stdout, /^\S+\s+default\s+\d+s ago\s+never$/m);
  assert.not.ok(ls.stdout.includes(key) || ls.stdout.includes(other), 'no secret in the list');
  const listed = JSON.parse((await run('keys', 'ls', 'vault', '--json')).stdout).keys as Record<string, unknown>[];
  assert.equal(listed.map((k) => k.name).sort(), ['ci', 'default']);
  assert.not.ok(JSON.stringify(listed).includes(key), 'no secret in the JSON list');
  const ci = listed.find((k) => k.name === 'ci')!;
  assert.equal(Object.keys(ci).sort(), ['createdAt', 'id', 'lastUsedAt', 'name']);

  const rm = await run('keys', 'rm', 'vault', String(ci.id));
  assert.is(rm.code, 0, rm.stderr);
  assert.match(rm.stdout, new RegExp(`^✔ key ${escapeRe(String(ci.id))} of vault revoked`));
  // refused within 5 s (each API process may cache a key that long)
  await waitFor('the revoked key to be refused', async () => (await callEndpoint(url, {}, { 'x-function-key': key })).status === 401, {
    timeoutMs: 10_000,
    intervalMs: 100,
  });
  assert.is((await callEndpoint(url, {}, { 'x-function-key': other })).status, 200, 'the other key still works');
  oneLineError(await run('keys', 'rm', 'vault', String(ci.id)), /^error: \S/);
  const after = JSON.parse((await run('keys', 'ls', 'vault', '--json')).stdout).keys as { name: string }[];
  assert.equal(after.map((k) => k.name), ['default']);

  // keys on a function that does not ask for them: said so on stderr
  assert.is((await run('access', 'vault', 'private')).code, 0);
  const noted = await run('keys', 'create', 'vault', '--key-name', 'later', '--json');
  assert.is(noted.code, 0, noted.stderr);
  const issued = JSON.parse(noted.stdout);
  assert.match(issued.key, /^fk_/);
  assert.is(issued.name, 'later');
  const plain = await run('keys', 'create', 'vault', '--key-name', 'later-2');
  assert.match(plain.stderr, /^note: vault is private: only your own token is accepted, not keys; "containerpub access vault key" lets keys in$/m);
  assert.is((await api.get(`/api/functions/${id}`)).body.access, 'private');
});

const watching = suite('cli: watch');

watching('deploys on start, on a save, not on an identical save, once for a burst; keeps going after a failed build', async () => {
  const { api, env: userEnv } = await tokenUser();
  const dir = newDir('watched');
  writeFunctionDir(dir, 'w1');
  const index = path.join(dir, 'index.mjs');
  const w = startCli(['watch', dir, '--name', 'live'], userEnv);
  try {
    await w.waitFor(/✔ live v1 is live/);
    await w.waitFor(/watching for changes \(last deployed v1, sha256 [0-9a-f]{12}\)/);
    const fnId = (await functionsOf(api))[0].id;
    const invoke = async () => (await api.post(`/api/functions/${fnId}/invoke`, {})).body.result.tag as string;

    // an edit → v2, live
    let from = w.output().length;
    fs.writeFileSync(index, handlerSource('w2'));
    await w.waitFor(/✔ live v2 is live/, { from });
    await w.waitFor(/watching for changes \(last deployed v2/, { from });
    assert.is(await invoke(), 'w2');

    // the same bytes saved again: the watcher says so, and no version is made
    from = w.output().length;
    fs.writeFileSync(index, handlerSource('w2'));
    await w.waitFor(/unchanged \(sha256 [0-9a-f]{12}\), nothing to deploy/, { from });
    await w.waitFor(/watching for changes/, { from });
    assert.is((await functionsOf(api))[0].latestVersion, 2);

    // 20 rapid writes: one deploy (two if the debounce fired mid-burst), ending on the last content
    from = w.output().length;
    for (let i = 0; i < 20; i++) fs.writeFileSync(index, handlerSource(`burst-${i}`));
    const finalSha = (await packDirectory(dir)).sha256.slice(0, 12);
    await w.waitFor(new RegExp(`watching for changes \\(last deployed v\\d+, sha256 ${finalSha}\\)`), { from });
    const latest = (await functionsOf(api))[0].latestVersion;
    assert.ok(latest === 3 || latest === 4, `one or two deploys for the burst, got ${latest - 2}\n${w.output().slice(from)}`);
    assert.is(await invoke(), 'burst-19');

    // a build that fails is reported; the watcher carries on and the next fix deploys
    from = w.output().length;
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fn', main: 'missing.mjs', type: 'module' }));
    await w.waitFor(/✘ live v\d+ failed: package.json "main"/, { from });
    await w.waitFor(/watching for changes/, { from });
    assert.is(await invoke(), 'burst-19', 'the live version is untouched by the failed build');
    from = w.output().length;
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fn', main: 'index.mjs', type: 'module', fixed: true }));
    await w.waitFor(/✔ live v\d+ is live/, { from });

    // never two deploys at once: each version was requested only after the previous one's build ended
    const events = ((await api.get(`/api/functions/${fnId}/logs?limit=1000`)).body.logs as { event: string; version: number }[]).reverse();
    const at = (event: string, version: number) => events.findIndex((e) => e.event === event && e.version === version);
    const last = (await functionsOf(api))[0].latestVersion;
    for (let v = 2; v <= last; v++) {
      const ended = Math.max(at('build_succeeded', v - 1), at('build_failed', v - 1));
      assert.ok(ended >= 0 && ended < at('deploy_requested', v), `v${v} was requested after v${v - 1} finished building`);
    }

    // Ctrl-C with a deploy in flight: exits 0 at once
    from = w.output().length;
    fs.writeFileSync(index, handlerSource('interrupted'));
    await w.waitFor(/change detected → packing/, { from });
    const stopped = await w.stop('SIGINT', 3000);
    assert.is(stopped.code, 0, w.output());
    assert.match(w.output().slice(from), /stopped watching/);
  } finally {
    await w.stop('SIGKILL').catch(() => {});
  }
});

watching('a restarted watch does not redeploy files that are already the latest version', async () => {
  const { api, env: userEnv } = await tokenUser();
  const dir = newDir('rewatch');
  writeFunctionDir(dir, 'same');
  const first = await runCli(['deploy', dir, '--name', 'again'], userEnv);
  assert.is(first.code, 0, first.stderr);
  const w = startCli(['watch', dir, '--name', 'again'], userEnv);
  try {
    await w.waitFor(/unchanged \(sha256 [0-9a-f]{12}\), nothing to deploy/);
    await w.waitFor(/watching for changes \(last deployed v1/);
    assert.is((await functionsOf(api))[0].latestVersion, 1);
    const stopped = await w.stop('SIGTERM', 3000);
    assert.is(stopped.code, 0);
  } finally {
    await w.stop('SIGKILL').catch(() => {});
  }
});

watching('watch refuses a missing directory and a missing login at once', async () => {
  const missing = await runCli(['watch', path.join(scratch, 'nope'), '--name', 'x'], cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url, CONTAINERPUB_TOKEN: 'x' }));
  oneLineError(missing, /^error: no such directory:/);
  const dir = newDir('nologin');
  writeFunctionDir(dir, 'x');
  const noLogin = await runCli(['watch', dir, '--name', 'x'], cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url }));
  oneLineError(noLogin, /^error: not logged in/, 3);
});

watching.after(async () => {
  await tp.close();
  fs.rmSync(scratch, { recursive: true, force: true });
});

packing.run();
cli.run();
failures.run();
tokenCmds.run();
endpoints.run();
watching.run();
