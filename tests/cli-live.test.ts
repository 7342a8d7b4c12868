// The scriptable CLI (issue 16): --json on every command (one document that parses), --help with
// an example and the exit codes on every command, exit code 3 for auth, NO_COLOR and colour only
// when asked, shell completion from the command table, status, delete, whoami, open, INIT_CWD,
// --name defaults, `logs --follow` and `deploy` through the event stream. The CLI runs as a real
// child process against a real platform (only status's rendering of a dependency that is down runs
// against a stub of GET /api/status: S3 down would take this file's platform with it).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { COMMANDS } from '../scripts/cli/commands/table.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { cliEnv, handlerSource, newHome, runCli, startCli, writeFunctionDir, type CliResult } from './support/cli.ts';

const t = await startTestPlatform({}, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-cli-live-'));
let counter = 0;
const newDir = (label: string) => path.join(scratch, `${label}-${++counter}`);

async function tokenUser() {
  const api = await tp.newUser();
  const env = cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url, CONTAINERPUB_TOKEN: api.token });
  return { api, env, cli: (...args: string[]) => runCli(args, env) };
}

const shown = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
function ok(r: CliResult): CliResult {
  assert.is(r.code, 0, shown(r));
  return r;
}

/** A stand-in for GET /api/status answering a given body: a platform whose storage is down. */
async function statusStub(body: unknown, status = 200) {
  const server = http.createServer((req, res) => {
    const authorized = req.headers.authorization === 'Bearer stub-token';
    res.writeHead(req.url === '/api/status' && authorized ? status : authorized ? 404 : 401, { 'content-type': 'application/json' });
    res.end(JSON.stringify(req.url === '/api/status' && authorized ? body : { error: { code: authorized ? 'not_found' : 'unauthorized', message: 'no' } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const STATUS = {
  version: '0.1.0',
  database: { dialect: 'sqlite', ok: true, latencyMs: 1 },
  storage: { ok: true, latencyMs: 3 },
  driver: 'process',
  runners: [{ id: 'runner-1', lastSeenAt: new Date().toISOString() }],
  queue: { depth: 2, oldestQueuedAt: new Date(Date.now() - 5000).toISOString() },
};

// ---------------------------------------------------------------------------------------------
const scriptable = suite('cli: scriptable');

scriptable('every command (and the general help) has --help with an example and the exit codes', async () => {
  const general = ok(await runCli(['--help'], cliEnv(newHome(scratch))));
  assert.match(general.stdout, /Exit codes:\n  0  ok\n  1  failure.*\n  2  usage.*\n  3  authentication/);
  assert.match(general.stdout, /Example/);
  for (const c of COMMANDS) assert.ok(general.stdout.includes(`  ${c.name} `), `${c.name} is listed`);
  // four at a time: thirty CLI processes at once starve a loaded 2-core machine
  const results: CliResult[] = [];
  for (let i = 0; i < COMMANDS.length; i += 4) {
    results.push(...(await Promise.all(COMMANDS.slice(i, i + 4).map((c) => runCli([c.name, '--help'], cliEnv(newHome(scratch)), { timeoutMs: 120_000 })))));
  }
  COMMANDS.forEach((c, i) => {
    const r = ok(results[i]!);
    assert.match(r.stdout, /\nExamples?:\n  \S/, `${c.name} --help has an example`);
    assert.match(r.stdout, /Exit codes:/, `${c.name} --help has the exit codes`);
    assert.ok(r.stdout.startsWith(`Usage: containerpub ${c.name}`), r.stdout);
  });
});

/**
 * A preload that makes fetch (and the classes that come with it) throw: Node 20 loads and compiles
 * fetch's implementation on first use, ~0.16 s a command, so the CLI speaks node:http
 * (scripts/cli/http-exchange.ts). Every command runs under it below.
 */
function withoutFetch(env: Record<string, string>): Record<string, string> {
  const preload = path.join(scratch, 'no-fetch.cjs');
  fs.writeFileSync(
    preload,
    `for (const name of ['fetch', 'Request', 'Response', 'Headers', 'FormData', 'EventSource'])
      Object.defineProperty(globalThis, name, { configurable: true, get() { throw new Error('the CLI used the global ' + name + ' (slow to load): use scripts/cli/http-exchange.ts'); } });\n`,
  );
  return { ...env, NODE_OPTIONS: `--require ${preload}` };
}

scriptable('--json: every command prints one JSON document on stdout that parses (and none uses fetch)', async () => {
  const home = newHome(scratch);
  const env = withoutFetch(cliEnv(home, { CONTAINERPUB_URL: tp.url }));
  const email = `json-${process.pid}-${Date.now()}@example.com`;
  const dir = newDir('json');
  writeFunctionDir(dir, 'one');
  const covered = new Set<string>();
  const parsed: Record<string, any> = {};
  const json = async (...args: string[]) => {
    const r = await runCli([...args, '--json'], env);
    assert.is(r.code, 0, `${args.join(' ')}: ${shown(r)}`);
    try {
      parsed[args[0]!] = JSON.parse(r.stdout);
    } catch (err) {
      assert.unreachable(`${args.join(' ')} --json printed something that is not one JSON document: ${(err as Error).message}\n${r.stdout}`);
    }
    covered.add(args[0]!);
    return parsed[args[0]!];
  };
  await json('register', '--email', email, '--password', 'correct horse battery');
  await json('login', '--email', email, '--password', 'correct horse battery');
  assert.is((await json('whoami')).email, email);
  assert.is((await json('deploy', dir, '--name', 'jf')).version, 1);
  fs.writeFileSync(path.join(dir, 'index.mjs'), handlerSource('two'));
  assert.is((await json('deploy', dir, '--name', 'jf', '--no-activate')).awaitingApproval, true);
  await json('ls');
  await json('history', 'jf');
  await json('diff', 'jf', '1', '2');
  await json('config', 'jf');
  await json('env', 'ls', 'jf');
  await json('secrets', 'ls', 'jf');
  await json('url', 'jf');
  await json('open', 'jf');
  await json('access', 'jf', 'public');
  await json('keys', 'ls', 'jf');
  await json('invoke', 'jf');
  await json('logs', 'jf');
  await json('metrics', 'jf');
  await json('instances', 'jf');
  await json('tag', 'jf', 'stable', '1');
  await json('tags', 'jf');
  await json('tokens', 'ls');
  await json('approve', 'jf', '2');
  await json('traffic', 'jf', '--to', '1', '--percent', '10');
  await json('promote', 'jf');
  await json('rollback', 'jf', '--to', '2');
  fs.writeFileSync(path.join(dir, 'index.mjs'), handlerSource('three'));
  await json('deploy', dir, '--name', 'jf', '--no-activate');
  await json('canary', 'jf', '--to', '3', '--detach');
  await json('completion', 'bash');
  const s = await json('status');
  assert.is(s.database.dialect, tp.platform.db.dialect);
  assert.ok(s.database.ok && s.storage.ok, JSON.stringify(s));
  assert.ok(Array.isArray(s.runners) && typeof s.queue.depth === 'number', JSON.stringify(s));
  // watch prints one object per line (one per deploy): each line parses
  const w = startCli(['watch', dir, '--name', 'jf', '--json'], env);
  try {
    await w.waitFor(/\{"[^\n]*\}\n/, { timeoutMs: 60_000 });
  } finally {
    await w.stop('SIGINT').catch(() => {});
  }
  const lines = w.output().split('\n').filter((l) => l.startsWith('{'));
  assert.ok(lines.length > 0, w.output());
  for (const l of lines) JSON.parse(l);
  covered.add('watch');
  await json('delete', 'jf', '--yes');
  await json('logout');
  assert.equal(
    [...covered].sort(),
    COMMANDS.map((c) => c.name).sort(),
    'every command of the table was run with --json',
  );
});

scriptable('exit code 3: a token the API refuses, and no login at all', async () => {
  const bad = await runCli(['ls'], cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url, CONTAINERPUB_TOKEN: 'cp_not_a_real_token' }));
  assert.is(bad.code, 3, shown(bad));
  assert.match(bad.stderr, /refused the token/);
  const none = await runCli(['whoami'], cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url }));
  assert.is(none.code, 3, shown(none));
  const usage = await runCli(['ls', '--bogus'], cliEnv(newHome(scratch)));
  assert.is(usage.code, 2);
});

scriptable('colour: none on a pipe, none under NO_COLOR, and only the marks under FORCE_COLOR=1', async () => {
  const { env } = await tokenUser();
  const dir = newDir('colour');
  writeFunctionDir(dir, 'c');
  ok(await runCli(['deploy', dir, '--name', 'colour'], env));
  const plain = ok(await runCli(['tag', 'colour', 'a', '1'], env));
  assert.not.match(plain.stdout + plain.stderr, /\x1b\[/);
  const { FORCE_COLOR: _ignored, ...noForce } = env;
  const noColor = ok(await runCli(['tag', 'colour', 'b', '1'], { ...noForce, NO_COLOR: '1' }));
  assert.not.match(noColor.stdout + noColor.stderr, /\x1b\[/);
  const forced = ok(await runCli(['tag', 'colour', 'c', '1'], { ...noForce, FORCE_COLOR: '1' }));
  assert.match(forced.stdout, /^\x1b\[32m✔\x1b\[0m colour@c → v1$/m);
  // --json stays JSON whatever the colour settings
  const j = ok(await runCli(['tags', 'colour', '--json'], { ...noForce, FORCE_COLOR: '1' }));
  assert.is(JSON.parse(j.stdout).tags.length, 3);
});

scriptable('completion: bash and zsh scripts name every command; the bash one is valid bash', async () => {
  const env = cliEnv(newHome(scratch));
  const bash = ok(await runCli(['completion', 'bash'], env)).stdout;
  const zsh = ok(await runCli(['completion', 'zsh'], env)).stdout;
  assert.match(bash, /complete -F _containerpub containerpub/);
  assert.match(zsh, /^#compdef containerpub/);
  for (const c of COMMANDS) {
    assert.ok(new RegExp(`\\b${c.name}\\b`).test(bash.split('\n').find((l) => l.includes('compgen -W') && l.includes('help completion')) ?? ''), `bash completes ${c.name}`);
    assert.match(zsh, new RegExp(`'${c.name}:`), `zsh completes ${c.name}`);
  }
  assert.match(bash, /deploy\) COMPREPLY=\(\$\(compgen -W "[^"]*--no-activate/);
  execFileSync('bash', ['-n'], { input: bash });
  // and it completes: load it and ask for "containerpub dep<TAB>"
  const words = execFileSync('bash', ['-c', `${bash}\nCOMP_WORDS=(containerpub dep); COMP_CWORD=1; _containerpub; echo "\${COMPREPLY[@]}"`]).toString().trim();
  assert.is(words, 'deploy');
  const bad = await runCli(['completion', 'fish'], env);
  assert.is(bad.code, 2);
});

scriptable('status prints the platform, its database, storage, driver, runners and queue (GET /api/status)', async () => {
  const { env } = await tokenUser();
  // the runner of this platform writes its heartbeat at start: it is listed
  const r = ok(await runCli(['status'], env));
  assert.match(r.stdout, /platform\s+\d+\.\d+\.\d+/);
  assert.match(r.stdout, new RegExp(`database\\s+${tp.platform.db.dialect}: ok \\(\\d+(\\.\\d+)? ms\\)`));
  assert.match(r.stdout, /storage\s+ok \(\d+(\.\d+)? ms\)/);
  assert.match(r.stdout, /driver\s+process/);
  assert.match(r.stdout, /queue\s+\d+ builds? waiting/);
  assert.match(r.stdout, /runners\s+[1-9]/, r.stdout);
  const refused = await runCli(['status'], { ...env, CONTAINERPUB_TOKEN: 'cp_not_a_real_token' });
  assert.is(refused.code, 3);
  const down = await statusStub({ ...STATUS, storage: { ok: false, latencyMs: null } });
  try {
    const r = await runCli(['status'], cliEnv(newHome(scratch), { CONTAINERPUB_URL: down.url, CONTAINERPUB_TOKEN: 'stub-token' }));
    assert.is(r.code, 1, shown(r));
    assert.match(r.stdout, /storage\s+NOT OK/);
  } finally {
    await down.close();
  }
});

scriptable('delete refuses without --yes off a terminal, deletes with it; whoami; open', async () => {
  const { api, cli } = await tokenUser();
  const dir = newDir('del');
  writeFunctionDir(dir, 'd');
  ok(await cli('deploy', dir, '--name', 'doomed'));
  const refused = await cli('delete', 'doomed');
  assert.is(refused.code, 2, shown(refused));
  assert.match(refused.stderr, /pass --yes/);
  assert.is((await api.get('/api/functions')).body.functions.length, 1);
  const fnId = (await api.get('/api/functions')).body.functions[0].id;
  const o = ok(await cli('open', 'doomed'));
  assert.is(o.stdout, `${tp.url}/dashboard/functions/doomed\n`);
  assert.is(ok(await cli('open')).stdout, `${tp.url}/dashboard\n`);
  const gone = ok(await cli('delete', 'doomed', '--yes'));
  assert.match(gone.stdout, /✔ doomed deleted/);
  assert.is((await api.get('/api/functions')).body.functions.length, 0);
  assert.is((await api.get(`/api/functions/${fnId}`)).status, 404);
  const again = await cli('delete', 'doomed', '--yes');
  assert.is(again.code, 1);
  assert.match(again.stderr, /no function named "doomed"/);
  const me = ok(await cli('whoami'));
  const account = (await api.get('/api/auth/me')).body;
  assert.match(me.stdout, new RegExp(`^${account.email.replace(/[.+]/g, '\\$&')} \\(handle ${account.handle}\\)`));
});

scriptable('paths are relative to INIT_CWD (npm run), and --name defaults to containerpub.json, package.json, then the directory', async () => {
  const { api, env } = await tokenUser();
  const parent = newDir('typed-here');
  // package.json names it: "@acme/Hello_World" → hello-world
  writeFunctionDir(path.join(parent, 'pkg'), 'p');
  fs.writeFileSync(path.join(parent, 'pkg', 'package.json'), JSON.stringify({ name: '@acme/Hello_World', main: 'index.mjs', type: 'module' }));
  // the CLI runs from the repository root (as under `npm run cli`); INIT_CWD says where the user was
  const fromPkg = ok(await runCli(['deploy', './pkg'], { ...env, INIT_CWD: parent }));
  assert.match(fromPkg.stdout, /✔ hello-world v1 is live/);
  // no name in package.json: the directory's
  writeFunctionDir(path.join(parent, 'My_Dir'), 'd');
  fs.writeFileSync(path.join(parent, 'My_Dir', 'package.json'), JSON.stringify({ main: 'index.mjs', type: 'module' }));
  assert.match(ok(await runCli(['deploy', 'My_Dir'], { ...env, INIT_CWD: parent })).stdout, /✔ my-dir v1 is live/);
  // containerpub.json wins over package.json; --name over both
  fs.writeFileSync(path.join(parent, 'pkg', 'containerpub.json'), JSON.stringify({ name: 'from-file' }));
  assert.match(ok(await runCli(['deploy', 'pkg'], { ...env, INIT_CWD: parent })).stdout, /✔ from-file v1 is live/);
  assert.match(ok(await runCli(['deploy', 'pkg', '--name', 'explicit'], { ...env, INIT_CWD: parent })).stdout, /✔ explicit v1 is live/);
  // invoke --file too
  fs.writeFileSync(path.join(parent, 'event.json'), '{"from":"init-cwd"}');
  const inv = ok(await runCli(['invoke', 'explicit', '--file', 'event.json'], { ...env, INIT_CWD: parent }));
  assert.equal(JSON.parse(inv.stdout).event, { from: 'init-cwd' });
  // without INIT_CWD the same relative path is looked up where the CLI runs (the repository root here)
  const missing = await runCli(['deploy', './pkg'], env);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /no such directory/);
  const names = ((await api.get('/api/functions')).body.functions as { name: string }[]).map((f) => f.name).sort();
  assert.equal(names, ['explicit', 'from-file', 'hello-world', 'my-dir']);
});

// ---------------------------------------------------------------------------------------------
const live = suite('cli: live tails');

live('deploy prints the build log as the build goes, and ends as before', async () => {
  const { env } = await tokenUser();
  const dir = newDir('live-deploy');
  writeFunctionDir(dir, 'l');
  const r = ok(await runCli(['deploy', dir, '--name', 'live'], env));
  assert.match(r.stdout, /live v1: uploaded; building/);
  assert.match(r.stdout, /  │ \[containerpub\] build of version 1 \(attempt 1\)/);
  assert.match(r.stdout, /  │ \[containerpub\] built in/);
  assert.match(r.stdout, /✔ live v1 is live\n/);
  // the log comes before the verdict
  assert.ok(r.stdout.indexOf('│ [containerpub] built in') < r.stdout.indexOf('✔ live v1 is live'));
  // a failing build: exit 1, and the same tail as before
  fs.writeFileSync(path.join(dir, 'package.json'), '{ not json');
  const failed = await runCli(['deploy', dir, '--name', 'live'], env);
  assert.is(failed.code, 1, shown(failed));
  assert.match(failed.stderr, /✘ live v2 failed/);
  assert.match(failed.stderr, /build log \(last \d+ lines\)/);
});

live('deploy against a server without the event stream (404) polls as before', async () => {
  const { env } = await tokenUser();
  // an "older API": everything is passed on to the real one except the stream
  const target = new URL(tp.url);
  const proxy = http.createServer((req, res) => {
    if (req.url?.includes('/events/stream')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: { code: 'not_found', message: 'not found' } }));
    }
    const upstream = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  try {
    const dir = newDir('old-server');
    writeFunctionDir(dir, 'o');
    const r = ok(await runCli(['deploy', dir, '--name', 'old', '--url', `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`], env));
    assert.match(r.stdout, /✔ old v1 is live\n/);
    assert.not.match(r.stdout, /│/, 'no build log: it was polled');
    const follow = await runCli(['logs', 'old', '--follow', '--url', `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`], env);
    assert.is(follow.code, 1);
    assert.match(follow.stderr, /has no event stream/);
  } finally {
    await new Promise<void>((r) => proxy.close(() => r()));
  }
});

live('logs --follow prints an invocation and its output as it happens; Ctrl-C exits 0', async () => {
  const { api, env, cli } = await tokenUser();
  const dir = newDir('follow');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'follow', main: 'index.mjs', type: 'module' }));
  fs.writeFileSync(path.join(dir, 'index.mjs'), "export default async (event) => { console.log('follow says', event.word); return 1; };\n");
  ok(await cli('deploy', dir));
  const f = startCli(['logs', 'follow', '--follow'], withoutFetch(env));
  try {
    await f.waitFor(/following follow \(Ctrl-C to stop\)/);
    const from = f.output().length;
    const fnId = (await api.get('/api/functions')).body.functions[0].id;
    const inv = await api.post(`/api/functions/${fnId}/invoke`, { word: 'hello-live' });
    assert.is(inv.status, 200);
    await f.waitFor(new RegExp(`── .* v1  ok  \\d+ ms  request ${inv.body.requestId}\\n   follow says hello-live`), { from, timeoutMs: 15_000 });
    const stopped = await f.stop('SIGINT');
    assert.is(stopped.code, 0, f.output());
  } finally {
    await f.stop('SIGKILL').catch(() => {});
  }
  // --json: one object per line, {id, event, data}
  const j = startCli(['logs', 'follow', '--follow', '--json', '--since', '0'], env);
  try {
    await j.waitFor(/"event":"invocation"/, { timeoutMs: 15_000 });
    const stopped = await j.stop('SIGINT');
    assert.is(stopped.code, 0);
    const lines = j.output().split('\n').filter((l) => l.startsWith('{'));
    const messages = lines.map((l) => JSON.parse(l));
    assert.ok(messages.some((m) => m.event === 'build_succeeded'));
    const said = messages.find((m) => m.event === 'invocation');
    assert.match(said.data.logs, /follow says hello-live/);
    assert.match(said.id, /^\d+-\d+/);
  } finally {
    await j.stop('SIGKILL').catch(() => {});
  }
});

live.after(async () => {
  await tp.close();
  fs.rmSync(scratch, { recursive: true, force: true });
});

scriptable.run();
live.run();
