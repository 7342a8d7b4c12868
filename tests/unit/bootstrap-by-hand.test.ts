// The bootstrap run by hand, without the platform (CONTAINERPUB_SOCKET unset), as `docker run -i
// --rm <image>` runs it: one invocation from stdin, and the PORT mode serving the function over
// HTTP. Each case runs the real bootstrap as a child process in a function directory laid out as
// the drivers lay it out (<root>/.containerpub/bootstrap.mjs and entry.json).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BOOTSTRAP_FILE, bootstrapFiles } from '../../shared/runtime/protocol.ts';
import { ignoreClosedStdin } from '../support/processes.ts';
import { waitFor } from '../support/services.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-bootstrap-'));
const started: { kill(): void }[] = [];
test.after(() => {
  for (const child of started) child.kill();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A function directory holding `index.mjs` and the platform's two files. */
function functionDir(source: string): string {
  const root = fs.mkdtempSync(path.join(tmp, 'fn-'));
  fs.writeFileSync(path.join(root, 'index.mjs'), source);
  fs.mkdirSync(path.join(root, '.containerpub'));
  for (const file of bootstrapFiles('index.mjs')) fs.writeFileSync(path.join(root, file.path), file.content);
  return root;
}

/** Only what a container would have: no CONTAINERPUB_SOCKET (nor anything else of the test's). */
const bareEnv = (extra: Record<string, string> = {}) => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', ...extra });

/** One run from stdin, to its exit (bounded: a run that hangs fails the test). */
function runOnce(root: string, stdin: string | Buffer): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BOOTSTRAP_FILE], { cwd: root, env: bareEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the run did not end within 10 s; stderr: ${stderr}`));
    }, 10_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
    ignoreClosedStdin(child);
    child.stdin.end(stdin);
  });
}

/** The PORT mode on a port of the system's choosing (PORT=0): its URL, read from what it prints. */
async function servePort(root: string): Promise<{ url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [BOOTSTRAP_FILE], { cwd: root, env: bareEnv({ PORT: '0' }), stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const port = await waitFor('the bootstrap to print its address', () => {
    if (child.exitCode !== null) throw new Error(`it exited ${child.exitCode}: ${stderr}`);
    return /serving index\.mjs \(\w+ handler\) on http:\/\/0\.0\.0\.0:(\d+)/.exec(stderr)?.[1];
  }, { timeoutMs: 10_000 });
  return {
    url: `http://127.0.0.1:${port}`,
    stderr: () => {
      assert.is(stdout, '', 'nothing on stdout in the PORT mode');
      return stderr;
    },
  };
}

const EVENT_FN = `
console.error('module loaded');
export default async (event, context) => {
  console.log('printed by the handler');
  process.stdout.write('written to stdout\\n');
  if (event?.fail) throw new Error('it failed: ' + event.fail);
  return { hello: event?.name ?? null, requestId: context.requestId, version: context.version };
};`;

// ---------------------------------------------------------------- stdin

test('stdin: the result is one JSON line on stdout; the handler\'s prints go to stderr; exit 0', async () => {
  const root = functionDir(EVENT_FN);
  const out = await runOnce(root, '{"name":"ada"}');
  assert.is(out.code, 0, out.stderr);
  assert.ok(out.stdout.endsWith('\n') && out.stdout.indexOf('\n') === out.stdout.length - 1, `one line: ${JSON.stringify(out.stdout)}`);
  const answer = JSON.parse(out.stdout);
  assert.is(answer.ok, true);
  assert.is(answer.result.hello, 'ada');
  assert.match(answer.result.requestId, /^[0-9a-f-]{36}$/, 'a request id is made for the run');
  assert.is(answer.result.version, 0, 'no platform: no version in the environment');
  assert.equal(Object.keys(answer).sort(), ['ok', 'result'], 'no logs in the envelope: they are on stderr');
  assert.match(out.stderr, /printed by the handler\nwritten to stdout\n/);
  assert.not.match(out.stdout, /printed|written/);
});

test('stdin: an empty stdin is the null event', async () => {
  const out = await runOnce(functionDir(EVENT_FN), '  \n');
  assert.is(out.code, 0, out.stderr);
  assert.equal(JSON.parse(out.stdout), { ok: true, result: { hello: null, requestId: JSON.parse(out.stdout).result.requestId, version: 0 } });
});

test('stdin: a handler that throws exits 1, with its message on stdout\'s envelope and its stack on stderr', async () => {
  const out = await runOnce(functionDir(EVENT_FN), '{"fail":"no luck"}');
  assert.is(out.code, 1);
  assert.equal(JSON.parse(out.stdout), { ok: false, error: 'it failed: no luck' });
  assert.match(out.stderr, /Error: it failed: no luck\n\s+at /, 'the stack, for whoever reads the logs');
  assert.ok(out.stderr.trimEnd().endsWith('it failed: no luck'), out.stderr);
});

test('stdin: bad JSON exits 1 with a clear message, before any function code runs', async () => {
  const out = await runOnce(functionDir(EVENT_FN), '{"name": ada}');
  assert.is(out.code, 1);
  const answer = JSON.parse(out.stdout);
  assert.is(answer.ok, false);
  assert.match(answer.error, /^the event on stdin is not valid JSON: /);
  assert.match(out.stderr, /the event on stdin is not valid JSON: /);
  assert.not.match(out.stderr, /module loaded/, 'the module is not loaded for an event that cannot be run');
  assert.not.match(out.stderr, /\n\s+at /, 'a message, not a stack trace');
});

test('stdin: an event over 8 MiB is refused, exit 1', async () => {
  const out = await runOnce(functionDir(EVENT_FN), Buffer.alloc(8 * 1024 * 1024 + 10, 0x20));
  assert.is(out.code, 1);
  assert.match(JSON.parse(out.stdout).error, /the event on stdin is larger than 8388608 bytes/);
});

test('stdin: a result that is not JSON, and a module without a handler, exit 1 saying why', async () => {
  const bigint = await runOnce(functionDir('export default async () => 10n;'), '');
  assert.is(bigint.code, 1);
  assert.match(JSON.parse(bigint.stdout).error, /not JSON-serializable/);
  const none = await runOnce(functionDir('export const answer = 42;'), '');
  assert.is(none.code, 1);
  assert.match(JSON.parse(none.stdout).error, /index\.mjs does not export a handler/);
});

test('stdin: work handed to waitUntil finishes before the exit; an open timer does not keep the run alive', async () => {
  const root = functionDir(`
    export default async (event, context) => {
      setInterval(() => {}, 1000);
      context.waitUntil(new Promise((r) => setTimeout(r, 200)).then(() => console.error('waitUntil done')));
      return 'answered';
    };`);
  const out = await runOnce(root, 'null');
  assert.is(out.code, 0, out.stderr);
  assert.equal(JSON.parse(out.stdout), { ok: true, result: 'answered' });
  assert.match(out.stderr, /waitUntil done/);
  assert.ok(out.ms < 5000, `exited after ${out.ms} ms`);
});

test('stdin: an HTTP handler gets the event as a JSON POST to "/" and answers {status, headers, body}', async () => {
  const root = functionDir(`
    export default {
      async fetch(request) {
        console.log('handling', request.method);
        const event = await request.json();
        return new Response('hi ' + event.name + ' at ' + new URL(request.url).pathname, { status: 201, headers: { 'x-kind': 'http' } });
      },
    };`);
  const out = await runOnce(root, '{"name":"ada"}');
  assert.is(out.code, 0, out.stderr);
  const answer = JSON.parse(out.stdout);
  assert.equal(answer, {
    ok: true,
    result: { status: 201, headers: { 'content-type': 'text/plain;charset=UTF-8', 'x-kind': 'http' }, body: 'hi ada at /' },
  });
  assert.match(out.stderr, /handling POST/);
});

// ---------------------------------------------------------------- PORT

test('PORT: an HTTP handler gets the request as sent (path, query, method, body); no protocol headers leak', async () => {
  const root = functionDir(`
    export default {
      async fetch(request, context) {
        console.log('request', request.method, new URL(request.url).pathname);
        return Response.json({
          method: request.method,
          url: request.url,
          body: await request.text(),
          sawProtocolHeader: request.headers.has('x-containerpub-request-id'),
          requestId: context.requestId,
        }, { headers: { 'x-kind': 'http' } });
      },
    };`);
  const server = await servePort(root);
  const res = await fetch(`${server.url}/some/path?q=1`, {
    method: 'PUT',
    body: 'raw body',
    headers: { 'x-containerpub-request-id': 'spoofed' },
  });
  assert.is(res.status, 200);
  assert.is(res.headers.get('x-kind'), 'http');
  assert.is(res.headers.get('x-containerpub-logs'), null, 'the logs are on stderr, not sent to the caller');
  const body = (await res.json()) as any;
  assert.is(body.method, 'PUT');
  assert.match(body.url, /^http:\/\/127\.0\.0\.1:\d+\/some\/path\?q=1$/);
  assert.is(body.body, 'raw body');
  assert.is(body.sawProtocolHeader, false);
  assert.match(body.requestId, /^[0-9a-f-]{36}$/);
  assert.not.equal(body.requestId, 'spoofed');
  const second = (await fetch(`${server.url}/other`).then((r) => r.json())) as any;
  assert.not.equal(second.requestId, body.requestId, 'one request id per request');
  await waitFor('the handler\'s print on stderr', () => /request PUT \/some\/path\n/.test(server.stderr()));
});

test('PORT: an event handler gets the JSON body as its event and answers JSON 200; bad JSON is a 400', async () => {
  const server = await servePort(functionDir(EVENT_FN));
  const res = await fetch(`${server.url}/anything`, { method: 'POST', body: '{"name":"ada"}' });
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  const body = (await res.json()) as any;
  assert.is(body.hello, 'ada');

  const bad = await fetch(server.url, { method: 'POST', body: '{nope' });
  assert.is(bad.status, 400);
  assert.match(((await bad.json()) as any).error, /not valid JSON/);

  const failing = await fetch(server.url, { method: 'POST', body: '{"fail":"on purpose"}' });
  assert.is(failing.status, 500);
  assert.equal(await failing.json(), { error: 'it failed: on purpose' });
  await waitFor('the handler\'s prints on stderr', () => /printed by the handler/.test(server.stderr()));
});

test('PORT: a value that is not a port exits 1 saying so', async () => {
  const root = functionDir(EVENT_FN);
  const out = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [BOOTSTRAP_FILE], { cwd: root, env: bareEnv({ PORT: 'eighty' }), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stderr }));
  });
  assert.is(out.code, 1);
  assert.match(out.stderr, /PORT must be a port number \(0 to 65535\), not "eighty"/);
});

test.run();
