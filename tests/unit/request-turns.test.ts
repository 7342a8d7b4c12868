// Requests start in short turns of the event loop (api/http/turns.ts): past the turn's budget a
// request waits for a later iteration, in arrival order, and the event loop gets to its I/O (and to
// accepting a new connection, one per iteration in Node 20) in between.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RequestTurns } from '../../api/http/turns.ts';

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

test('idle: a request starts at once; past the budget the rest wait, and run in arrival order', async () => {
  const turns = new RequestTurns(1, 100);
  const started: number[] = [];
  for (let i = 0; i < 10; i++) {
    assert.ok(turns.admit(() => {
      started.push(i);
      busy(0.6);
    }));
  }
  // 0.6 ms each against a 1 ms budget: the first two fit in this turn, the third is over it (one,
  // when the machine took the CPU away during the first)
  assert.ok(started.length >= 1 && started.length <= 2, JSON.stringify(started));
  assert.is(turns.queued, 10 - started.length);
  for (let i = 0; started.length < 10; i++) {
    if (i > 1_000) throw new Error(`only ${started.length} of 10 started`);
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(started, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.is(turns.queued, 0);
});

test('the event loop gets to its I/O between turns, not after every waiting request', async () => {
  // a connected pair of sockets: bytes written to one are readable at the other at once, and
  // delivered in the next poll phase of the event loop
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  const peer = await accepted;
  try {
    const turns = new RequestTurns(1, 100);
    let started = 0;
    for (let i = 0; i < 20; i++) {
      turns.admit(() => {
        started++;
        busy(0.6);
      });
    }
    const startedBeforeIo = new Promise<number>((resolve) => peer.once('data', () => resolve(started)));
    client.write('x');
    // without turns all 20 would have run before the read: 2 start now, 2 in this iteration's
    // check phase, and the next iteration reads the socket first
    const n = await startedBeforeIo;
    assert.ok(n <= 6, `${n} requests started before the socket's bytes were read`);
    for (let i = 0; started < 20; i++) {
      if (i > 1_000) throw new Error(`only ${started} of 20 started`);
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    client.destroy();
    peer.destroy();
    server.close();
  }
});

test('past its bound the queue refuses (the server answers 503) and starts nothing refused', async () => {
  const turns = new RequestTurns(1, 2);
  const ran: string[] = [];
  // the first takes the whole turn: the next wait
  assert.ok(turns.admit(() => {
    ran.push('first');
    busy(2);
  }));
  assert.ok(turns.admit(() => ran.push('second')));
  assert.ok(turns.admit(() => ran.push('third')));
  assert.not.ok(turns.admit(() => ran.push('refused')));
  assert.is(turns.queued, 2);
  for (let i = 0; turns.queued > 0; i++) {
    if (i > 1_000) throw new Error('the queue did not drain');
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(ran, ['first', 'second', 'third']);
});

test('a turn needs a budget: with none, nothing would ever start', () => {
  assert.throws(() => new RequestTurns(0), /budget/);
});

// --- through serveApi, in a server process of its own (its event loop is blocked on purpose) ---

const serverModule = new URL('../../api/server.ts', import.meta.url).href;
const metricsModule = new URL('../../shared/observability/metrics.ts', import.meta.url).href;
const observeModule = new URL('../../shared/observability/http.ts', import.meta.url).href;
const turnsModule = new URL('../../api/http/turns.ts', import.meta.url).href;

/** maxWaiting: the server's turns are bound as createApi binds them (API_MAX_WAITING_REQUESTS); else the default */
function startServer(marker: string, maxWaiting?: number): Promise<{ child: ChildProcess; port: number }> {
  const code = `
    const { Hono } = await import('hono');
    const fs = await import('node:fs');
    const { serveApi } = await import(${JSON.stringify(serverModule)});
    const busy = (ms) => { const until = performance.now() + ms; while (performance.now() < until); };
    const { PlatformMetrics } = await import(${JSON.stringify(metricsModule)});
    const { observeRequests } = await import(${JSON.stringify(observeModule)});
    const { boundTurns, turnsOf } = await import(${JSON.stringify(turnsModule)});
    const events = [];
    const metrics = new PlatformMetrics();
    const app = new Hono();
    app.use('*', observeRequests(metrics));
    // as createApi does
    const turns = ${maxWaiting === undefined ? 'turnsOf(app)' : `boundTurns(app, ${maxWaiting})`};
    metrics.trackWaitingRequests(() => turns.queued);
    app.get('/waiting', async (c) => c.json((await metrics.registry.getSingleMetric('containerpub_http_requests_waiting').get()).values[0].value));
    // a request that holds the event loop for 2 ms, as a deploy on the synchronous SQLite driver does
    app.get('/work', (c) => { events.push(c.req.query('who') ?? 'work'); busy(2); return c.text('done'); });
    // holds the event loop for 300 ms, having said so, while the client queues work and connects
    app.get('/block', (c) => { fs.writeFileSync(${JSON.stringify(marker)}, 'blocked'); busy(300); events.push('unblocked'); return c.text('done'); });
    app.get('/events', (c) => c.json(events));
    app.get('/work-seconds', async (c) => {
      const data = (await metrics.httpDuration.get()).values;
      return c.json(data.filter((v) => v.labels.route === '/work' && v.metricName?.endsWith('_sum')).reduce((a, v) => a + v.value, 0));
    });
    const api = await serveApi(app, { host: '127.0.0.1', port: 0 });
    api.server.on('connection', () => events.push('connection'));
    process.stdout.write(JSON.stringify({ port: api.port }) + '\\n');`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start within 20 s: ${stderr}`)), 20_000);
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(timer);
        resolve({ child, port: (JSON.parse(line) as { port: number }).port });
      }
    });
    child.once('exit', (c) => reject(new Error(`the server exited (${c}): ${stderr}`)));
  });
}

interface Answer {
  head: string;
  body: string;
}

/** A keep-alive connection that sends one GET at a time and resolves with the whole body. */
function connection(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let buffered = Buffer.alloc(0);
  let waiter: ((answer: Answer) => void) | null = null;
  let closed: Error | null = null;
  let failWaiter: ((err: Error) => void) | null = null;
  // a request on a connection the server closed fails instead of waiting for ever
  socket.on('close', () => {
    closed = new Error('the connection was closed');
    failWaiter?.(closed);
  });
  socket.on('data', (d) => {
    buffered = Buffer.concat([buffered, d]);
    const head = buffered.indexOf('\r\n\r\n');
    if (head < 0 || !waiter) return;
    const length = Number(/content-length: (\d+)/i.exec(buffered.subarray(0, head).toString())?.[1] ?? 0);
    if (buffered.length < head + 4 + length) return;
    const answer = { head: buffered.subarray(0, head).toString(), body: buffered.subarray(head + 4, head + 4 + length).toString() };
    buffered = buffered.subarray(head + 4 + length);
    const w = waiter;
    waiter = null;
    failWaiter = null;
    w(answer);
  });
  return {
    connected,
    /** the answer's body */
    async get(p: string): Promise<string> {
      return (await this.request(p)).body;
    },
    /** the whole answer: its head (status line and headers) and body */
    request(p: string): Promise<Answer> {
      if (closed) return Promise.reject(closed);
      const answered = new Promise<Answer>((resolve, reject) => {
        waiter = resolve;
        failWaiter = reject;
      });
      socket.write(`GET ${p} HTTP/1.1\r\nHost: test\r\n\r\n`);
      return answered;
    },
    close: () => socket.destroy(),
    /** goes away at once (TCP reset), as a client that gave up does */
    reset: () => socket.resetAndDestroy(),
  };
}

test('serveApi: a new connection is accepted within a turn, not after every request that arrived with it', async () => {
  const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-turns-')), 'blocked');
  const { child, port } = await startServer(marker);
  const busyClients = Array.from({ length: 20 }, () => connection(port));
  const late = connection(port);
  const quitter = connection(port);
  try {
    for (const c of [...busyClients, late, quitter]) await c.connected;
    await Promise.all([...busyClients, late, quitter].map((c) => c.get('/work')));
    const blocker = connection(port);
    const blocked = blocker.get('/block');
    for (let i = 0; !fs.existsSync(marker); i++) {
      if (i > 500) throw new Error('the server never started blocking');
      await new Promise((r) => setTimeout(r, 10));
    }
    // While its event loop is held: 20 requests arrive, then a new connection (the kernel completes
    // its handshake; the server accepts it in its next iteration, after reading those 20).
    const queued = busyClients.slice(1).map((c) => c.get('/work'));
    // read in the same iteration as the work above it, and started after it: 19 requests ahead,
    // and the one after it (sent on a connection already open) still waiting
    const waiting = busyClients[0]!.get('/waiting');
    const lastSent = late.get('/work');
    // read with the rest; its client is gone (a reset) before its turn comes
    // (its answer never comes: the request fails when the client resets below)
    void quitter.get('/work?who=quitter').catch(() => {});
    const newcomer = connection(port);
    await newcomer.connected;
    const newcomerDone = newcomer.get('/work');
    // the first answer after the block: the server has read every request above
    await Promise.race(queued);
    quitter.reset();
    assert.equal(await Promise.all([blocked, newcomerDone, lastSent, ...queued]), Array(22).fill('done'));
    assert.ok(Number(await waiting) >= 1, `the gauge read ${await waiting} requests waiting`);
    // (the reset reaches the server within an iteration; the request had ~20 × 2 ms to wait)

    const events = JSON.parse(await busyClients[0]!.get('/events')) as string[];
    assert.not.ok(events.includes('quitter'), 'the request of a client that had gone away was not served');
    const afterBlock = events.slice(events.indexOf('unblocked') + 1);
    const accepted = afterBlock.indexOf('connection');
    assert.ok(accepted >= 0, JSON.stringify(events));
    const workedFirst = afterBlock.slice(0, accepted).filter((e) => e === 'work').length;
    // 2 ms each against a 1 ms turn: one starts, the rest wait for the turns after the accept
    // (all 20 ran first before turns: Node accepts one connection per iteration)
    assert.ok(workedFirst <= 2, `${workedFirst} of the 20 requests started before the new connection was accepted`);
    // The request-duration metric counts the wait for a turn: 42 requests of 2 ms (84 ms), but each
    // of the first round of 21 also waited for the ones ahead of it: 2 ms × (0 + 1 + … + 20) = 420 ms.
    const workSeconds = JSON.parse(await busyClients[0]!.get('/work-seconds')) as number;
    assert.ok(workSeconds >= 0.4, `the /work requests took ${workSeconds} s in the metrics`);
    blocker.close();
    newcomer.close();
  } finally {
    for (const c of [...busyClients, late, quitter]) c.close();
    child.kill('SIGKILL');
    // a helper the child started (tsx's esbuild) may hold its pipes a while longer
    child.stdout!.destroy();
    child.stderr!.destroy();
    fs.rmSync(path.dirname(marker), { recursive: true, force: true });
  }
});

test('serveApi: past API_MAX_WAITING_REQUESTS waiting, a request gets a 503 at once and its connection closes; the rest are served, then new ones', async () => {
  const MAX_WAITING = 5;
  const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-turns-')), 'blocked');
  const { child, port } = await startServer(marker, MAX_WAITING);
  const clients = Array.from({ length: 20 }, () => connection(port));
  try {
    for (const c of clients) await c.connected;
    // one at a time: 20 at once could themselves pass the bound of 5, and close connections
    for (const c of clients) await c.get('/work');
    const blocker = connection(port);
    const blocked = blocker.get('/block');
    for (let i = 0; !fs.existsSync(marker); i++) {
      if (i > 500) throw new Error('the server never started blocking');
      await new Promise((r) => setTimeout(r, 10));
    }
    // 20 requests arrive while the event loop is held; it reads them all in one iteration: one
    // starts (2 ms against a 1 ms turn), MAX_WAITING wait for later turns, the rest are refused
    const answers = await Promise.all(clients.map((c) => c.request('/work')));
    assert.is(await blocked, 'done');
    const status = (a: Answer) => Number(a.head.split(' ')[1]);
    const served = answers.filter((a) => status(a) === 200);
    const refused = answers.filter((a) => status(a) === 503);
    assert.is(served.length + refused.length, 20, answers.map((a) => a.head.split('\r\n')[0]).join(', '));
    assert.ok(served.length >= MAX_WAITING && served.length <= MAX_WAITING + 2, `${served.length} served`);
    for (const a of served) assert.is(a.body, 'done');
    for (const a of refused) {
      assert.match(a.head, /\r\nretry-after: 1\r\n/i);
      assert.match(a.head, /\r\nconnection: close\r\n/i);
      assert.match(a.head, /\r\nx-containerpub-error: unavailable\r\n/i);
      const body = JSON.parse(a.body) as { error: { code: string; message: string } };
      assert.is(body.error.code, 'unavailable');
      assert.match(body.error.message, `has ${MAX_WAITING} requests waiting`);
    }
    // the queue drained: a new connection is served as usual
    const after = connection(port);
    await after.connected;
    assert.is(await after.get('/work'), 'done');
    after.close();
    blocker.close();
  } finally {
    for (const c of clients) c.close();
    child.kill('SIGKILL');
    child.stdout!.destroy();
    child.stderr!.destroy();
    fs.rmSync(path.dirname(marker), { recursive: true, force: true });
  }
});

test.run();
