// The FROM allow-list: which images a tenant's Dockerfile may build from, parsed the way Docker
// reads a Dockerfile (directives, continuations, flags, ARG defaults, stages, COPY --from).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkDockerfileBases, dockerfileBases, imageAllowed, normalizeImage } from '../../shared/runtime/dockerfile-policy.ts';
import { BuildError } from '../../shared/runtime/types.ts';

const BASE = 'containerpub/node-base:20';
const images = (text: string) => dockerfileBases(text).map((b) => `${b.instruction} ${b.image}@${b.line}`);

test('normalizeImage: docker.io prefixes dropped, latest implied, digests kept', () => {
  assert.is(normalizeImage('node'), 'node:latest');
  assert.is(normalizeImage('docker.io/library/node:20'), 'node:20');
  assert.is(normalizeImage('index.docker.io/containerpub/node-base:20'), BASE);
  assert.is(normalizeImage('127.0.0.1:5000/base'), '127.0.0.1:5000/base:latest');
  assert.is(normalizeImage('127.0.0.1:5000/base:1'), '127.0.0.1:5000/base:1');
  assert.is(normalizeImage('node@sha256:abc'), 'node@sha256:abc');
});

test('imageAllowed: exact entries and repository:* wildcards, nothing looser', () => {
  assert.ok(imageAllowed('docker.io/containerpub/node-base:20', [BASE]));
  assert.not.ok(imageAllowed('containerpub/node-base:21', [BASE]));
  assert.not.ok(imageAllowed('containerpub/node-base', [BASE]), 'no tag means latest, which is not allowed');
  assert.ok(imageAllowed('node:22-slim', ['node:*']));
  assert.not.ok(imageAllowed('nodejs:22', ['node:*']), 'a wildcard covers its own repository only');
  assert.not.ok(imageAllowed('evil/node:1', ['node:*']));
});

test('FROM lines, with flags, stage names, indexes and scratch', () => {
  const text = [
    '# syntax=docker/dockerfile:1',
    `FROM --platform=linux/amd64 ${BASE} AS build`,
    'RUN ["node", "-e", "1"]',
    'from build as second',
    'FROM second',
    'FROM scratch',
    'COPY --from=build /app /app',
    'COPY --from=0 /x /x',
    'COPY --from=127.0.0.1:5000/function-abc-v1:latest /app /stolen',
  ].join('\n');
  assert.equal(images(text), [`FROM ${BASE}@2`, 'COPY --from 127.0.0.1:5000/function-abc-v1:latest@9']);
});

test('continuations, comments inside them, the escape directive, CRLF', () => {
  assert.equal(images(`FROM \\\n  # a comment\n  ${BASE}\r\nCOPY . /app\r\n`), [`FROM ${BASE}@1`]);
  assert.equal(images('# escape=`\nFROM `\n  busybox\n'), ['FROM busybox@2']);
});

test('ARG defaults before FROM are substituted; a variable without one is refused', () => {
  assert.equal(images(`ARG BASE=${BASE}\nFROM $BASE\n`), [`FROM ${BASE}@2`]);
  assert.equal(images('ARG TAG="20"\nFROM containerpub/node-base:${TAG}\n'), [`FROM ${BASE}@2`]);
  assert.equal(images(`ARG B\nFROM \${B:-${BASE}}\n`), [`FROM ${BASE}@2`]);
  assert.throws(() => dockerfileBases('ARG B\nFROM $B\n'), (e: Error) => e instanceof BuildError && /\$B/.test(e.message));
  assert.throws(() => dockerfileBases('RUN x\n'), /no FROM/);
});

test('checkDockerfileBases: names the refused image and line before anything is built', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-policy-'));
  try {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${BASE}\nCOPY . /app\n`);
    assert.is((await checkDockerfileBases(dir, [BASE])).length, 1);
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${BASE} AS a\nFROM a\nFROM busybox:1.36\n`);
    try {
      await checkDockerfileBases(dir, [BASE]);
      assert.unreachable('busybox is not allowed');
    } catch (err) {
      assert.instance(err, BuildError);
      assert.match((err as Error).message, /line 3: FROM busybox:1\.36 is not an allowed base image/);
      assert.match((err as Error).message, /ALLOWED_BASE_IMAGES/);
    }
    assert.is((await checkDockerfileBases(dir, [BASE, 'busybox:*'])).length, 2);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
