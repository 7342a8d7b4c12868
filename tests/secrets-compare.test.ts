// Secrets end to end and the version comparison (process driver, SQLite and PostgreSQL): the handler
// sees a secret's value, while the raw database, every API answer, build log and log line of the
// platform never hold it; GET …/deployments/{a}/compare/{b} says what changed, secrets by name only.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction } from './support/archives.ts';
import { deployAndBuild, waitForBuild } from './support/flows.ts';
import type { Client } from './support/http.ts';

const logLines: string[] = [];
const t = await startTestPlatform({ LOG_LEVEL: 'debug' }, { runner: true, logSink: (line) => logLines.push(line) });
if (!t) process.exit(0);
const tp = t as TestPlatform;

/** Distinctive values: found in any text they reach, whatever the encoding around them. */
const SECRET = `s3cr3t-${randomBytes(12).toString('hex')}`;
const SECRET_2 = `s3cr3t-${randomBytes(12).toString('hex')}`;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

// Proves it sees the value without ever answering it: the sha256 of what it got.
const SECRET_READER = `
import { createHash } from 'node:crypto';
export default async (event, context) => {
  const v = process.env.API_TOKEN;
  return { tokenSha: v === undefined ? null : createHash('sha256').update(v).digest('hex'), greeting: process.env.GREETING ?? null, version: context.version };
};`;

/** Every answer the suite got, to check none of them held a secret value. */
const answers: string[] = [];
function recorded(api: Client): Client {
  const request: Client['request'] = async (method, p, opts) => {
    const res = await api.request(method, p, opts);
    answers.push(`${method} ${p} → ${res.status} ${JSON.stringify(res.body)}`);
    return res;
  };
  return {
    ...api,
    request,
    get: (p, opts) => request('GET', p, opts),
    post: (p, json, opts) => request('POST', p, { ...(opts ?? {}), ...(json === undefined ? {} : { json }) }),
    del: (p, opts) => request('DELETE', p, opts),
  } as Client;
}

async function patchConfig(api: Client, id: string, patch: unknown) {
  const res = await api.request('PATCH', `/api/functions/${id}/config`, { json: patch });
  assert.is(res.status, 202, JSON.stringify(res.body));
  const built = await waitForBuild(api, id, res.body.version);
  assert.is(built.status, 'active', built.error ?? '');
  return built;
}

function assertNowhere(texts: string[], what: string): void {
  for (const value of [SECRET, SECRET_2]) {
    const hit = texts.find((s) => s.includes(value));
    assert.is(hit, undefined, `a secret value appeared in ${what}`);
  }
}

// ---------------------------------------------------------------------------------------------
const secrets = suite('secrets');

let fnId = '';
let api: Client;

secrets('the handler sees a secret; the API shows its name only', async () => {
  api = recorded(await tp.newUser());
  const d = await deployAndBuild(api, 'with-secret', await makeNodeFunction(SECRET_READER));
  fnId = d.id;
  const built = await patchConfig(api, fnId, { secrets: { API_TOKEN: SECRET } });
  assert.equal(built.config.secrets, ['API_TOKEN']);
  const out = await api.post(`/api/functions/${fnId}/invoke`, {});
  assert.is(out.status, 200, JSON.stringify(out.body));
  assert.is(out.body.result.tokenSha, sha(SECRET));
  assert.is(out.body.result.version, 2);
  const current = await api.get(`/api/functions/${fnId}/config`);
  assert.equal(current.body.secrets, ['API_TOKEN']);
  // every view of the history, detail and list
  await api.get(`/api/functions/${fnId}/deployments`);
  await api.get(`/api/functions/${fnId}/deployments/2`);
  await api.get(`/api/functions/${fnId}/logs`);
  await api.get(`/api/functions/${fnId}/invocations`);
  await api.get(`/api/functions/${fnId}`);
});

secrets('a deploy carrying a secret, a changed secret and a bad patch: still never in an answer', async () => {
  const archive = await makeNodeFunction(SECRET_READER + '\n// v3');
  const deploy = await api.post('/api/functions/deploy', {
    name: 'with-secret',
    sizeBytes: archive.length,
    sha256: sha256(archive),
    config: { secrets: { API_TOKEN: SECRET_2 } },
  });
  assert.is(deploy.status, 201, JSON.stringify(deploy.body));
  await fetch(deploy.body.upload.url, { method: 'PUT', headers: deploy.body.upload.headers, body: archive });
  await api.post(`/api/functions/${fnId}/deployments/${deploy.body.version}/complete`);
  const built = await waitForBuild(api, fnId, deploy.body.version);
  assert.is(built.status, 'active', built.error ?? '');
  assert.is((await api.post(`/api/functions/${fnId}/invoke`, {})).body.result.tokenSha, sha(SECRET_2));
  // a refused patch does not echo the value it carried
  const bad = await api.request('PATCH', `/api/functions/${fnId}/config`, { json: { secrets: { 'bad name': SECRET, OK: 5 } } });
  assert.is(bad.status, 400);
  const badDeploy = await api.post('/api/functions/deploy', { name: 'with-secret', sizeBytes: 10, sha256: 'x', config: { secrets: { A: SECRET } } });
  assert.is(badDeploy.status, 400);
  // an old version still runs with its own secret
  assert.is((await api.post(`/api/functions/${fnId}/invoke?version=2`, {})).body.result.tokenSha, sha(SECRET));
});

secrets('the raw database never holds the plaintext (every table; the SQLite files byte by byte)', async () => {
  const knex = tp.platform.db.knex;
  const rows: string[] = [];
  if (tp.platform.db.dialect === 'pg') {
    const tables = await knex('information_schema.tables').where({ table_schema: 'public' }).pluck('table_name');
    assert.ok(tables.includes('function_deployments') && tables.includes('platform_settings'));
    for (const table of tables) {
      const result = await knex.raw(`SELECT t::text AS row FROM "${table}" t`);
      for (const r of result.rows) rows.push(r.row);
    }
  } else {
    const tables: string[] = await knex('sqlite_master').where({ type: 'table' }).pluck('name');
    for (const table of tables) for (const r of await knex(table).select()) rows.push(JSON.stringify(r));
    // and the files themselves (the write-ahead log too: recent writes live there)
    const file = (tp.platform.config.database as { filename: string }).filename;
    for (const f of [file, `${file}-wal`]) {
      if (!fs.existsSync(f)) continue;
      const bytes = fs.readFileSync(f);
      for (const value of [SECRET, SECRET_2]) assert.is(bytes.indexOf(value), -1, `${path.basename(f)} holds a secret value`);
    }
  }
  assert.ok(rows.some((r) => r.includes('API_TOKEN')), 'the secret is stored (by name, sealed)');
  assertNowhere(rows, 'the database');
  const stored = await knex('function_deployments').where({ function_id: fnId, version: 2 }).first('config');
  assert.match(JSON.parse(stored.config).secrets.API_TOKEN, /^v1:[^:]+:[^:]+:[^:]+$/);
});

secrets('build logs and the platform log lines never hold it', async () => {
  const list = await api.get(`/api/functions/${fnId}/deployments`);
  for (const d of list.body.deployments) {
    const detail = await api.get(`/api/functions/${fnId}/deployments/${d.version}`);
    assert.type(detail.body.buildLogs, 'string');
  }
  assert.ok(logLines.length > 0, 'the platform logged something');
  assertNowhere(logLines, 'a log line');
});

// ---------------------------------------------------------------------------------------------
const compare = suite('compare two versions');

async function comparison(client: Client, id: string, a: number | string, b: number | string) {
  return client.get(`/api/functions/${id}/deployments/${a}/compare/${b}`);
}

compare('config changes: env added/removed/changed, a secret changed by name only, limits by key; code unchanged', async () => {
  const user = recorded(await tp.newUser());
  const d = await deployAndBuild(user, 'compared', await makeNodeFunction(SECRET_READER));
  const v1 = await user.get(`/api/functions/${d.id}/deployments/1`);
  await patchConfig(user, d.id, { env: { GREETING: 'hi', OLD: 'gone soon' }, secrets: { API_TOKEN: SECRET, KEEP: 'same' } }); // v2
  await patchConfig(user, d.id, {
    env: { GREETING: 'hello', OLD: null, NEW: 'x' },
    secrets: { API_TOKEN: SECRET_2, KEEP: 'same', ADDED: 'a' },
    memoryMb: 128,
    network: 'outbound',
  }); // v3

  const r = await comparison(user, d.id, 2, 3);
  assert.is(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.code, { changed: false, sha256: [v1.body.sha256, v1.body.sha256] });
  assert.equal(r.body.config.added, { 'env.NEW': 'x', 'secrets.ADDED': '(secret)' });
  assert.equal(r.body.config.removed, { 'env.OLD': 'gone soon' });
  const defaults = tp.platform.config;
  assert.equal(r.body.config.changed, {
    'env.GREETING': { from: 'hi', to: 'hello' },
    'secrets.API_TOKEN': { from: '(secret)', to: '(secret)' },
    memoryMb: { from: defaults.runtime.memoryMb, to: 128 },
    network: { from: defaults.runtime.defaultNetwork, to: 'outbound' },
  });
  // KEEP was set again to the same value: sealed anew, but not a change

  const back = await comparison(user, d.id, 3, 2);
  assert.equal(back.body.config.added, { 'env.OLD': 'gone soon' });
  assert.equal(back.body.config.removed, { 'env.NEW': 'x', 'secrets.ADDED': '(secret)' });

  const first = await comparison(user, d.id, 1, 2);
  assert.equal(first.body.config.added, {
    'env.GREETING': 'hi',
    'env.OLD': 'gone soon',
    'secrets.API_TOKEN': '(secret)',
    'secrets.KEEP': '(secret)',
  });
  assert.equal(first.body.config.changed, {});

  const same = await comparison(user, d.id, 3, 3);
  assert.equal(same.body, { code: { changed: false, sha256: [v1.body.sha256, v1.body.sha256] }, config: { added: {}, removed: {}, changed: {} } });
});

compare('a secret set again to the same value is not a change; a deploy of new code is', async () => {
  const user = recorded(await tp.newUser());
  const d = await deployAndBuild(user, 'resealed', await makeNodeFunction(SECRET_READER));
  await patchConfig(user, d.id, { secrets: { API_TOKEN: SECRET } }); // v2
  await patchConfig(user, d.id, { secrets: { API_TOKEN: SECRET } }); // v3: sealed again
  const sealed = await tp.platform.db.knex('function_deployments').where({ function_id: d.id }).whereIn('version', [2, 3]).orderBy('version').pluck('config');
  assert.is.not(JSON.parse(sealed[0]).secrets.API_TOKEN, JSON.parse(sealed[1]).secrets.API_TOKEN, 'a fresh IV each time');
  const r = await comparison(user, d.id, 2, 3);
  assert.equal(r.body.config, { added: {}, removed: {}, changed: {} });

  const next = await deployAndBuild(user, 'resealed', await makeNodeFunction(SECRET_READER + '\n// new code'));
  const code = await comparison(user, d.id, 3, next.version);
  assert.is(code.body.code.changed, true);
  assert.is(code.body.code.sha256[1], next.built.sha256);
  assert.is.not(code.body.code.sha256[0], code.body.code.sha256[1]);
  assert.equal(code.body.config, { added: {}, removed: {}, changed: {} }, 'the deploy inherited the configuration');
});

compare('bad versions are 400, missing ones 404, another owner gets 404', async () => {
  const user = recorded(await tp.newUser());
  const d = await deployAndBuild(user, 'cmp-errors', await makeNodeFunction(SECRET_READER));
  for (const [a, b] of [['x', 1], [1, '0'], [1, '-2'], ['1.5', 1]] as const) {
    const res = await comparison(user, d.id, a, b);
    assert.is(res.status, 400, `${a} ${b}: ${JSON.stringify(res.body)}`);
    assert.is(res.body.error.code, 'bad_request');
  }
  const missing = await comparison(user, d.id, 1, 9);
  assert.is(missing.status, 404);
  assert.is(missing.body.error.code, 'version_not_found');
  assert.match(missing.body.error.message, /version 9/);
  const other = recorded(await tp.newUser());
  assert.is((await comparison(other, d.id, 1, 1)).status, 404);
  assert.is((await comparison(user, 'Not A UUID', 1, 1)).status, 400);
  assert.is((await comparison(user, 'no-such-function', 1, 1)).status, 404);
});

compare('no answer of this file held a secret value', () => {
  assert.ok(answers.length > 20);
  assertNowhere(answers, 'an API answer');
  assertNowhere(logLines, 'a log line');
});

compare.after(() => tp.close());

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

secrets.run();
compare.run();
