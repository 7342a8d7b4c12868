// GET /api/functions/:id/events/stream: a build's progress (its log lines before build_succeeded,
// then activated), invocations with what they printed, resuming with Last-Event-ID without a repeat
// or a gap, the server closing a stream after EVENT_STREAM_MAX_SECONDS, the per-user limit (429),
// and what it refuses (a bad cursor, another user's function). Real API, runner and database.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makeNodeFunction } from './support/archives.ts';
import { deployAndBuild, deployPresigned } from './support/flows.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { waitFor } from './support/services.ts';

const MAX_SECONDS = 3;
const t = await startTestPlatform({ EVENT_STREAMS_PER_USER: '3', EVENT_STREAM_MAX_SECONDS: String(MAX_SECONDS), EVENT_STREAM_POLL_MS: '50' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

interface SseMessage {
  id: string | null;
  event: string;
  data: any;
}

/**
 * One SSE connection read as the spec says (fields, blank line between messages, comments start
 * with ":"). `closed` resolves when the server ends it.
 */
function openStream(token: string, functionId: string, opts: { lastEventId?: string; since?: string } = {}) {
  const controller = new AbortController();
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  const waiters = new Set<() => void>();
  let status = 0;
  const started = Date.now();
  let closedAt = 0;
  const url = `${tp.url}/api/functions/${functionId}/events/stream${opts.since !== undefined ? `?since=${encodeURIComponent(opts.since)}` : ''}`;
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'text/event-stream' };
  if (opts.lastEventId) headers['last-event-id'] = opts.lastEventId;
  const ready = fetch(url, { headers, signal: controller.signal });
  const closed = (async () => {
    const res = await ready;
    status = res.status;
    if (res.status !== 200) {
      const body = await res.json();
      closedAt = Date.now();
      waiters.forEach((w) => w());
      return body;
    }
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let at: number;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          const m: SseMessage = { id: null, event: 'message', data: null };
          let data: string[] = [];
          let isMessage = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) ((m.id = line.slice(4)), (isMessage = true));
            else if (line.startsWith('event: ')) m.event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (isMessage) {
            m.data = JSON.parse(data.join('\n'));
            messages.push(m);
          }
          data = [];
        }
        waiters.forEach((w) => w());
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    } finally {
      closedAt = Date.now();
      waiters.forEach((w) => w());
    }
    return null;
  })();
  return {
    messages,
    comments,
    closed,
    status: () => status,
    lifetimeMs: () => (closedAt || Date.now()) - started,
    isClosed: () => closedAt !== 0,
    close: () => controller.abort(),
    /** resolves once the server answered: with the status, after the stream's first comment when 200 */
    async ready(timeoutMs = 10_000): Promise<number> {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (status !== 0 && status !== 200) return status;
        if (comments.some((c) => c.startsWith('position '))) return 200;
        if (closedAt) return status;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error('the stream did not open');
    },
    /** resolves once a message satisfies `pred` (or fails after `timeoutMs` or when the stream ends) */
    until(pred: (m: SseMessage) => boolean, timeoutMs = 30_000): Promise<SseMessage> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.find(pred);
          if (found) return finish(() => resolve(found));
          if (closedAt) return finish(() => reject(new Error(`the stream ended first (status ${status}, after ${closedAt - started} ms, comments: ${comments.join(' | ')}); got ${messages.map((x) => x.event).join(', ')}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`timed out; got ${messages.map((x) => x.event).join(', ')}`))), timeoutMs);
        const finish = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/**
 * Reads a function's stream until `pred`, as an EventSource would: when the server ends it (max
 * duration) it reconnects with the last id it saw (or the position the stream started at), and a
 * 429 (the previous connection not yet seen closed) is retried.
 */
async function readAll(token: string, functionId: string, pred: (m: SseMessage) => boolean, from: { since?: string } = {}) {
  const all: SseMessage[] = [];
  let lastEventId: string | undefined;
  for (let round = 0; round < 60; round++) {
    const s = openStream(token, functionId, lastEventId ? { lastEventId } : { since: from.since });
    if ((await s.ready()) === 429) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    try {
      await s.until(pred, MAX_SECONDS * 1000 + 5000);
      s.close();
      all.push(...s.messages.slice(0, s.messages.findIndex(pred) + 1));
      return all;
    } catch {
      await s.closed;
      all.push(...s.messages);
      lastEventId = s.messages.at(-1)?.id ?? lastEventId ?? s.comments.find((c) => c.startsWith('position '))?.slice(9);
    }
  }
  throw new Error(`never saw the end; got ${all.map((m) => m.event).join(', ')}`);
}

const source = (tag: string) => `export default async (event) => { console.log('hello from ${tag}', JSON.stringify(event)); return { tag: '${tag}' }; };`;

// ---------------------------------------------------------------------------------------------
const stream = suite('events stream: builds, invocations, resuming');

stream("a deploy's progress arrives in order: upload, build start, its log, success, activation", async () => {
  const api = await tp.newUser();
  const first = await deployAndBuild(api, 'tail-me', await makeNodeFunction(source('one')));
  // from now (no cursor): nothing of version 1
  const reading = readAll(api.token, first.id, (m) => m.event === 'activated' && m.data.version === 2);
  await new Promise((r) => setTimeout(r, 300));
  await deployPresigned(api, 'tail-me', await makeNodeFunction(source('two')));
  const s = { messages: await reading };
  const events = s.messages.map((m) => m.event);
  assert.ok(!s.messages.some((m) => m.data.version === 1), `only what came after the connection: ${events}`);
  const at = (name: string) => events.indexOf(name);
  assert.ok(at('upload_completed') >= 0, events.join(', '));
  assert.ok(at('upload_completed') < at('build_started'), events.join(', '));
  assert.ok(at('build_started') < at('build_log'), events.join(', '));
  assert.ok(at('build_log') < at('build_succeeded'), events.join(', '));
  assert.ok(at('build_succeeded') < at('activated'), events.join(', '));
  const lines = s.messages.filter((m) => m.event === 'build_log').flatMap((m) => m.data.lines as string[]);
  assert.match(lines[0]!, /^\[containerpub\] build of version 2 \(attempt 1\)/);
  assert.ok(lines.some((l) => /built in/.test(l)), lines.join('\n'));
  // ids: unique, and every one names a position a reader can resume from
  const ids = s.messages.map((m) => m.id);
  assert.is(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id!, /^\d+-\d+(-\d+:\d+(,\d+:\d+)*)?$/);
  const activated = s.messages.find((m) => m.event === 'activated')!;
  assert.is(activated.data.version, 2);
  assert.type(activated.data.message, 'string');
});

stream('resuming with Last-Event-ID after a dropped connection repeats nothing and loses nothing', async () => {
  const api = await tp.newUser();
  const a = await deployAndBuild(api, 'resume-me', await makeNodeFunction(source('a')));
  await deployAndBuild(api, 'resume-me', await makeNodeFunction(source('b')));
  await deployAndBuild(api, 'resume-me', await makeNodeFunction(source('c')));
  const isEnd = (m: SseMessage) => m.event === 'activated' && m.data.version === 3;
  // the whole history at once
  const whole = await readAll(api.token, a.id, isEnd, { since: '0' });
  assert.ok(whole.length >= 15, `${whole.length} messages`);
  // the same, dropped after a few messages each time and resumed from the last id seen
  const pieces: SseMessage[] = [];
  let last: string | undefined;
  for (let round = 0; round < 80 && !pieces.some(isEnd); round++) {
    const s = openStream(api.token, a.id, last ? { lastEventId: last } : { since: '0' });
    if ((await s.ready()) === 429) {
      // the previous connection is not yet seen closed: a client retries
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const want = pieces.length + 4;
    await s.until((m) => isEnd(m) || s.messages.indexOf(m) + 1 + pieces.length >= want, 10_000);
    s.close();
    // what arrived up to the drop: a client has seen exactly these
    const seen = s.messages.slice(0, Math.min(s.messages.length, want - pieces.length));
    pieces.push(...seen);
    last = seen.at(-1)?.id ?? last;
  }
  const upToEnd = pieces.slice(0, pieces.findIndex(isEnd) + 1);
  assert.equal(
    upToEnd.map((m) => `${m.id} ${m.event}`),
    whole.map((m) => `${m.id} ${m.event}`),
  );
  // ?since= takes the same cursor as the header
  const fromQuery = await waitFor('a stream from ?since=', async () => {
    const s = openStream(api.token, a.id, { since: whole[5]!.id! });
    if ((await s.ready()) === 200) return s;
    await new Promise((r) => setTimeout(r, 100)); // 429: the previous connection is not yet seen closed
    return undefined;
  });
  try {
    const next = await fromQuery.until(() => true);
    assert.is(next.id, whole[6]!.id);
  } finally {
    fromQuery.close();
  }
});

stream('a build\'s log lines arrive while it runs, not only when it ends (BUILD_LOG_FLUSH_MS)', async () => {
  const api = await tp.newUser();
  const first = await deployAndBuild(api, 'slow-start', await makeNodeFunction(source('one')));
  // v2's instance does not start until the test says so: its readiness check holds the build
  const gate = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-gate-')), 'open');
  const held = `import fs from 'node:fs';
while (!fs.existsSync(${JSON.stringify(gate)})) await new Promise((r) => setTimeout(r, 50));
export default async () => ({ ok: true });`;
  const s = openStream(api.token, first.id);
  assert.is(await s.ready(), 200);
  try {
    const { deploymentId } = await deployPresigned(api, 'slow-start', await makeNodeFunction(held));
    const line = await s.until((m) => m.event === 'build_log' && (m.data.lines as string[]).some((l) => /readiness check: starting/.test(l)), 8_000);
    assert.is(line.data.deploymentId, deploymentId);
    assert.ok(!s.messages.some((m) => m.event === 'build_succeeded' || m.event === 'build_failed'), 'the line came while the build was still running');
    assert.is((await api.get(`/api/functions/${first.id}/deployments/2`)).body.status, 'building');
    fs.writeFileSync(gate, '');
    await s.until((m) => m.event === 'build_succeeded', 30_000);
  } finally {
    s.close();
    fs.writeFileSync(gate, '');
  }
});

stream('an invocation arrives with what it printed', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'talker', await makeNodeFunction(source('talk')));
  const s = openStream(api.token, d.id);
  try {
    assert.is(await s.ready(), 200);
    const inv = await api.post(`/api/functions/${d.id}/invoke`, { word: 'ping' });
    assert.is(inv.status, 200, JSON.stringify(inv.body));
    const m = await s.until((x) => x.event === 'invocation' && x.data.requestId === inv.body.requestId, 15_000);
    assert.is(m.data.outcome, 'ok');
    assert.is(m.data.version, 1);
    assert.match(m.data.logs, /hello from talk {"word":"ping"}/);
  } finally {
    s.close();
  }
});

stream('the server ends a stream after EVENT_STREAM_MAX_SECONDS, saying to resume', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'short', await makeNodeFunction(source('s')));
  const s = openStream(api.token, d.id);
  await s.closed;
  assert.is(s.status(), 200);
  assert.ok(s.lifetimeMs() >= MAX_SECONDS * 1000 - 100 && s.lifetimeMs() < MAX_SECONDS * 1000 + 3000, `${s.lifetimeMs()} ms`);
  assert.ok(s.comments.some((c) => /reconnect with Last-Event-ID/.test(c)), s.comments.join(' | '));
  assert.ok(s.comments.some((c) => /^position \d+-\d+/.test(c)), s.comments.join(' | '));
});

stream('a user may hold EVENT_STREAMS_PER_USER streams; one more is a 429 until one closes', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'many', await makeNodeFunction(source('m')));
  const open = [openStream(api.token, d.id), openStream(api.token, d.id), openStream(api.token, d.id)];
  try {
    for (const s of open) assert.is(await s.ready(), 200);
    const extra = openStream(api.token, d.id);
    const body = (await extra.closed) as any;
    assert.is(extra.status(), 429);
    assert.is(body.error.code, 'capacity_exceeded');
    // another user is not affected
    const other = await tp.newUser();
    const od = await deployAndBuild(other, 'mine', await makeNodeFunction(source('o')));
    const theirs = openStream(other.token, od.id);
    assert.is(await theirs.ready(), 200);
    theirs.close();
    // closing one frees a place (once the server has seen the connection go)
    open[0]!.close();
    const again = await waitFor('a place to free up', async () => {
      const s = openStream(api.token, d.id);
      if ((await s.ready()) === 200) return s;
      await s.closed;
      return undefined;
    }, { timeoutMs: 5000, intervalMs: 50 });
    again.close();
  } finally {
    for (const s of open) s.close();
  }
});

stream('a bad cursor is a 400; another user\'s function is a 404; no token is a 401', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'guarded', await makeNodeFunction(source('g')));
  const bad = await api.get(`/api/functions/${d.id}/events/stream`, { headers: { 'last-event-id': 'yesterday' } });
  assert.is(bad.status, 400);
  assert.is(bad.body.error.code, 'validation_failed');
  const badQuery = await api.get(`/api/functions/${d.id}/events/stream?since=x-y`);
  assert.is(badQuery.status, 400);
  const other = await tp.newUser();
  const foreign = await other.get(`/api/functions/${d.id}/events/stream`);
  assert.is(foreign.status, 404);
  assert.is(foreign.body.error.code, 'function_not_found');
  const anonymous = await api.get(`/api/functions/${d.id}/events/stream`, { token: null });
  assert.is(anonymous.status, 401);
});

stream.after(async () => {
  await tp.close();
});

stream.run();
