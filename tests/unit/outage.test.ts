// The outage classifier against errors produced for real: clients of PostgreSQL and S3 pointed at
// a port where nothing listens or at a server that never answers, and errors that are bugs.
// (imported first for its side effect: it silences the SDK's Node-version notice)
import '../../shared/storage/s3-storage.ts';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import knex from 'knex';
import pg from 'pg';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isDependencyOutage } from '../../shared/outage.ts';
import { startEmbeddedS3 } from '../../shared/storage/embedded-s3.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** Accepts connections and never says a word. */
async function silentServer() {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

const caught = async (work: () => Promise<unknown>) => {
  try {
    await work();
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
};

const s3 = (endpoint: string) =>
  new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    maxAttempts: 1,
  });

test('PostgreSQL refusing connections is an outage', async () => {
  const client = new pg.Client({ host: '127.0.0.1', port: await closedPort(), user: 'x', database: 'x', password: 'x' });
  assert.ok(isDependencyOutage(await caught(() => client.connect())));
});

test('knex finding no connection in time (KnexTimeoutError) is an outage', async () => {
  const silent = await silentServer();
  const db = knex({
    client: 'pg',
    connection: { host: '127.0.0.1', port: silent.port, user: 'x', database: 'x', password: 'x', connectionTimeoutMillis: 5000 },
    acquireConnectionTimeout: 300,
    pool: { min: 0, max: 1 },
  });
  try {
    const err = await caught(() => db.raw('select 1'));
    assert.is((err as Error).name, 'KnexTimeoutError');
    assert.ok(isDependencyOutage(err));
  } finally {
    await silent.close();
    await db.destroy();
  }
});

test('S3 refusing connections, or not answering in time, is an outage', async () => {
  const refused = s3(`http://127.0.0.1:${await closedPort()}`);
  assert.ok(isDependencyOutage(await caught(() => refused.send(new HeadBucketCommand({ Bucket: 'b' })))));
  const silent = await silentServer();
  const stalled = s3(`http://127.0.0.1:${silent.port}`);
  try {
    const err = await caught(() => stalled.send(new HeadBucketCommand({ Bucket: 'b' }), { abortSignal: AbortSignal.timeout(300) }));
    assert.ok(isDependencyOutage(err), String(err));
  } finally {
    await silent.close();
  }
});

test('an answered S3 error and plain bugs are not outages', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'outage-'));
  const server = await startEmbeddedS3({ directory: dir, bucket: 'present' });
  try {
    const err = await caught(() => s3(server.endpoint).send(new HeadBucketCommand({ Bucket: 'absent' })));
    assert.not.ok(isDependencyOutage(err));
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.not.ok(isDependencyOutage(new TypeError("Cannot read properties of undefined (reading 'id')")));
  assert.not.ok(isDependencyOutage(Object.assign(new Error('duplicate key'), { code: '23505' })));
  assert.not.ok(isDependencyOutage(undefined));
});

test.run();
