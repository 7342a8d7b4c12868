// RUNTIME_DRIVER=auto against an engine that does not answer (a real dockerode client on a socket
// path where nothing listens): the process driver only on a loopback HOST, otherwise start-up stops.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError } from '../../shared/config.ts';
import { isLoopbackHost, selectDriver } from '../../shared/runtime/select.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-select-'));
const deadEngine = () => new Docker({ socketPath: path.join(dir, 'no-engine.sock') });
const options = (driver: 'auto' | 'docker' | 'process', listenHost: string) => ({
  driver,
  listenHost,
  docker: { docker: deadEngine(), baseImage: 'containerpub/node-base:20', instanceDir: path.join(dir, 'i'), cpus: 1, pidsLimit: 64 },
  process: { artifactsDir: path.join(dir, 'a'), instanceDir: path.join(dir, 'i') },
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('isLoopbackHost: 127.0.0.0/8, ::1 and localhost only', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', 'example.com', '128.0.0.1', '127.0.0.1.example.com']) assert.not.ok(isLoopbackHost(h), h);
});

test('auto, no engine, HOST on loopback: the process driver', async () => {
  const d = await selectDriver(options('auto', '127.0.0.1'));
  assert.is(d.name, 'process');
  await d.close();
});

test('auto, no engine, HOST=0.0.0.0: start-up stops and names RUNTIME_DRIVER=process', async () => {
  for (const host of ['0.0.0.0', '10.1.2.3', '::']) {
    try {
      await selectDriver(options('auto', host));
      assert.unreachable(`selected a driver on ${host}`);
    } catch (err) {
      assert.instance(err, ConfigError);
      assert.match((err as Error).message, 'RUNTIME_DRIVER=process');
      assert.match((err as Error).message, `HOST=${host}`);
    }
  }
});

test('process, HOST=0.0.0.0: the explicit opt-in is honoured', async () => {
  const d = await selectDriver(options('process', '0.0.0.0'));
  assert.is(d.name, 'process');
  await d.close();
});

test.run();
