// The CLI's HTTP client (scripts/cli/http-exchange.ts under api-client.ts) against real local
// servers that misbehave on purpose: an answer that never comes, or stops half-way, is bounded by
// the timeout; a connection cut mid-body is an error, not a truncated document; an abort ends an
// event stream being read.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ApiClient } from '../../scripts/cli/api-client.ts';
import { exchange } from '../../scripts/cli/http-exchange.ts';

async function serve(handler: http.RequestListener) {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function failure(work: Promise<unknown>): Promise<Error> {
  try {
    await work;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a failure');
}

test('no answer, or half an answer: the timeout covers the body too', async () => {
  const s = await serve((req, res) => {
    if (req.url === '/api/half') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"functions": [');
    }
    // /api/silent: never answers
  });
  try {
    const api = new ApiClient(s.url, 'token');
    for (const path of ['/api/silent', '/api/half']) {
      const started = Date.now();
      const err = await failure(api.request('GET', path, { timeoutMs: 300 }));
      assert.match(err.message, new RegExp(`^the ContainerPub API at ${s.url} did not answer within \\d+ s$`), path);
      assert.ok(Date.now() - started < 5_000, `${path}: bounded`);
    }
  } finally {
    await s.close();
  }
});

test('a connection cut mid-body is an error naming the API, not a truncated document', async () => {
  const s = await serve((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
    res.write('{"functions": [');
    setImmediate(() => res.socket?.destroy());
  });
  try {
    const err = await failure(new ApiClient(s.url, 'token').request('GET', '/api/functions'));
    assert.match(err.message, new RegExp(`^cannot reach the ContainerPub API at ${s.url} \\(`));
  } finally {
    await s.close();
  }
});

test('an abort ends an event stream being read, with the abort reason', async () => {
  const s = await serve((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(': position 0\n\n');
  });
  try {
    const controller = new AbortController();
    const answer = await exchange(new URL(`${s.url}/stream`), { signal: controller.signal });
    assert.is(answer.status, 200);
    const chunks: string[] = [];
    const read = (async () => {
      for await (const chunk of answer.body) {
        chunks.push(chunk.toString());
        controller.abort(new Error('stopped by the user'));
      }
    })();
    const err = await failure(read);
    assert.is(err.message, 'stopped by the user');
    assert.equal(chunks, [': position 0\n\n']);
  } finally {
    await s.close();
  }
});

test.run();
