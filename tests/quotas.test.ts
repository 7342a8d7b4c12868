// Per-account quotas over HTTP, on the real platform: functions, builds queued or running, archive
// bytes stored, warm instances. Each refusal is quota_exceeded naming its limit, and a refused
// deploy spends no version number.
import { randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Runner } from '../runner/runner.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { assertUsageAgrees } from './support/usage.ts';
import { makeNodeFunction } from './support/archives.ts';
import { declaration, deployAndBuild } from './support/flows.ts';
import { accountQuotaRead } from '../shared/domain/quotas.ts';
import type { Client } from './support/http.ts';

const MAX_BYTES = 4096;
// no runner at first: queued builds stay queued, so the build quota can be reached
const t = await startTestPlatform({
  MAX_FUNCTIONS_PER_USER: '2',
  MAX_BUILDS_PER_USER: '2',
  MAX_ARCHIVE_BYTES_PER_USER: String(MAX_BYTES),
  MAX_INSTANCES_PER_USER: '1',
  FUNCTION_IDLE_MS: '60000',
});
if (!t) process.exit(0);
const tp = t as TestPlatform;
const db = tp.platform.db.knex;
const fn = (tag: string) => makeNodeFunction(`export default async () => ({ tag: ${JSON.stringify(tag)} });`);

/** An archive of about `bytes` bytes (random content does not compress). */
const bulky = (bytes: number) => makeNodeFunction('export default async () => 1;', { 'blob.bin': randomBytes(bytes).toString('base64') });

async function upload(api: Client, name: string, archive: Buffer) {
  const res = await api.post('/api/functions/deploy', { name, ...declaration(archive) });
  if (res.status !== 201) return { res };
  const put = await fetch(res.body.upload.url, { method: res.body.upload.method, headers: res.body.upload.headers, body: archive });
  assert.is(put.status, 200);
  return { res, complete: () => api.post(`/api/functions/${res.body.id}/deployments/${res.body.version}/complete`) };
}

const lastVersion = async (userId: string, name: string) =>
  (await db('functions').where({ user_id: userId, name }).first('last_version'))?.last_version;

function assertQuota(res: { status: number; body: any; headers: Headers }, status: number, limit: string) {
  assert.is(res.status, status, JSON.stringify(res.body));
  assert.is(res.body.error.code, 'quota_exceeded');
  assert.match(res.body.error.message, limit);
  assert.is(res.body.error.details.limit, limit);
  if (status === 429) assert.ok(Number(res.headers.get('retry-after')) > 0);
}

const s = suite('quotas');
s.after(() => tp.close());

s('MAX_FUNCTIONS_PER_USER: a third function is refused with 403; new versions of existing ones are not', async () => {
  const api = await tp.newUser();
  for (const name of ['one', 'two']) assert.is((await api.post('/api/functions/deploy', { name, ...declaration() })).status, 201);
  assertQuota(await api.post('/api/functions/deploy', { name: 'three', ...declaration() }), 403, 'MAX_FUNCTIONS_PER_USER');
  assert.is(await db('functions').where({ user_id: api.userId, name: 'three' }).first(), undefined);
  assert.is((await api.post('/api/functions/deploy', { name: 'one', ...declaration() })).status, 201);
  const other = await tp.newUser();
  assert.is((await other.post('/api/functions/deploy', { name: 'three', ...declaration() })).status, 201);
});

s('MAX_FUNCTIONS_PER_USER under concurrency: 6 first deploys of different names create exactly 2', async () => {
  const api = await tp.newUser();
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => api.post('/api/functions/deploy', { name: `race-${i}`, ...declaration() })));
  assert.equal(results.map((r) => r.status).sort(), [201, 201, 403, 403, 403, 403]);
  const n = await db('functions').where({ user_id: api.userId }).count({ n: '*' }).first();
  assert.is(Number(n!.n), 2);
});

s('MAX_BUILDS_PER_USER: a deploy while 2 builds are queued is 429 and spends no version; so is a third complete', async () => {
  const api = await tp.newUser();
  const a = await upload(api, 'builds', await fn('v1'));
  const b = await upload(api, 'builds', await fn('v2'));
  const c = await upload(api, 'builds', await fn('v3'));
  assert.is((await a.complete!()).status, 202);
  assert.is((await b.complete!()).status, 202);
  // the third was allocated before the slots filled: its complete is refused, and it stays pending
  assertQuota(await c.complete!(), 429, 'MAX_BUILDS_PER_USER');
  const row = await db('function_deployments').where({ function_id: c.res.body.id, version: 3 }).first();
  assert.is(row.status, 'pending_upload');
  const before = await lastVersion(api.userId, 'builds');
  assertQuota((await upload(api, 'builds', await fn('v4'))).res, 429, 'MAX_BUILDS_PER_USER');
  assert.is(await lastVersion(api.userId, 'builds'), before, 'the refused deploy spent no version');
});

s('MAX_BUILDS_PER_USER under concurrency: 8 completes at once for 2 slots queue exactly 2; the rest stay pending and may complete later', async () => {
  const api = await tp.newUser();
  // all allocated while no build is queued, so that every complete races for the slots
  const uploads = [];
  for (let i = 1; i <= 8; i++) uploads.push(await upload(api, 'slots', await fn(`v${i}`)));
  const answers = await Promise.all(uploads.map((u) => u.complete!()));
  assert.equal(answers.map((a) => a.status).sort(), [202, 202, 429, 429, 429, 429, 429, 429], JSON.stringify(answers.map((a) => a.body)));
  for (const a of answers) if (a.status === 429) assertQuota(a, 429, 'MAX_BUILDS_PER_USER');
  const rows = await db('function_deployments').where({ function_id: uploads[0]!.res.body.id }).select('status');
  assert.equal(rows.map((r: any) => r.status).sort(), ['building', 'building', ...Array(6).fill('pending_upload')]);
  // a slot freed (a build over): one waiting upload completes now
  const building = await db('function_deployments').where({ function_id: uploads[0]!.res.body.id, status: 'building' }).first('id');
  await db('function_deployments').where({ id: building.id }).update({ status: 'failed', error: 'test: build over' });
  const waiting = answers.findIndex((a) => a.status === 429);
  assert.is((await uploads[waiting]!.complete!()).status, 202);
});

s('MAX_ARCHIVE_BYTES_PER_USER: a declared size over what is left is 403 before any version; a racing one at complete', async () => {
  const api = await tp.newUser();
  const first = await bulky(2000);
  assert.ok(first.length > 2000 && first.length < MAX_BYTES, String(first.length));
  const a = await upload(api, 'bytes', first);
  assert.is((await a.complete!()).status, 202);
  const second = await bulky(2000);
  const before = await lastVersion(api.userId, 'bytes');
  assertQuota((await upload(api, 'bytes', second)).res, 403, 'MAX_ARCHIVE_BYTES_PER_USER');
  assert.is(await lastVersion(api.userId, 'bytes'), before, 'the refused deploy spent no version');
  // two uploads that each fit, both allocated before either completed: the bytes are counted
  // again at complete, so the second one is over; the version fails and its archive is deleted
  const racer = await tp.newUser();
  const x = await upload(racer, 'pair-x', await bulky(2000));
  const y = await upload(racer, 'pair-y', await bulky(2000));
  assert.is(x.res.status, 201);
  assert.is(y.res.status, 201);
  assert.is((await x.complete!()).status, 202);
  assertQuota(await y.complete!(), 403, 'MAX_ARCHIVE_BYTES_PER_USER');
  const row = await db('function_deployments').where({ function_id: y.res.body.id, version: y.res.body.version }).first();
  assert.is(row.status, 'failed');
  assert.is(await tp.platform.storage.head(row.s3_key), null);
  // the same race with both completes at once, each sent twice: the account's lock lets exactly one in
  const both = await tp.newUser();
  const p = await upload(both, 'both-p', await bulky(2000));
  const q = await upload(both, 'both-q', await bulky(2000));
  const answers = await Promise.all([p.complete!(), q.complete!(), p.complete!(), q.complete!()]);
  // a repeat of the refused one answers what it became (failed), or that its archive is gone
  for (const a of answers) assert.ok([202, 403, 409].includes(a.status), JSON.stringify(a.body));
  assert.ok(answers.some((a) => a.status === 403 && a.body.error.details?.limit === 'MAX_ARCHIVE_BYTES_PER_USER'), 'one was over');
  const rows = await db('function_deployments').whereIn('function_id', [p.res.body.id, q.res.body.id]).orderBy('status');
  assert.equal(rows.map((r: any) => r.status), ['building', 'failed'], 'one queued, one refused');
  const queued = await db('function_logs').whereIn('function_id', [p.res.body.id, q.res.body.id]).where({ event: 'upload_completed' });
  assert.is(queued.length, 1);
  // multipart: the size is known before allocation
  const form = new FormData();
  form.set('name', 'bytes');
  form.set('archive', new Blob([second]), 'function.tar.gz');
  const mp = await fetch(`${tp.url}/api/functions/deploy`, { method: 'POST', headers: { authorization: `Bearer ${api.token}` }, body: form });
  const body = await mp.json();
  assertQuota({ status: mp.status, body, headers: mp.headers }, 403, 'MAX_ARCHIVE_BYTES_PER_USER');
});

s('PostgreSQL plans the quota read from the account: its usage rows, by account, even as a generic plan', async () => {
  // (SQLite's plan: tests/unit/quota-read-plan.test.ts.) A generic plan made while no build was
  // queued once counted every queued build first and scanned the account's functions for each:
  // milliseconds a read under the locks of every deploy, once hundreds were queued. The counts now
  // come from the account's usage rows, and the plan must never reach the versions.
  if (tp.platform.db.dialect !== 'pg') return;
  const api = await tp.newUser();
  const read = accountQuotaRead(tp.platform.config.quotas, api.userId, { adding: 1 })!;
  const plan = await db.transaction(async (trx) => {
    await trx.raw('SET LOCAL plan_cache_mode = force_generic_plan');
    let n = 0;
    await trx.raw(`PREPARE quota_read_plan AS ${read.sql.replace(/\?/g, () => `$${++n}`)}`);
    const explained = await trx.raw(`EXPLAIN EXECUTE quota_read_plan(${read.bindings.map((b) => `'${b}'`).join(', ')})`);
    await trx.raw('DEALLOCATE quota_read_plan');
    return (explained.rows as Record<string, string>[]).map((r) => r['QUERY PLAN']).join('\n');
  });
  // builds and bytes: the account's usage rows, through their index by account
  const lookups = plan.match(/(Index Scan using function_usage_user on function_usage u|Bitmap Index Scan on function_usage_user)[^\n]*\n\s+Index Cond: \(user_id = \$\d+\)/g) ?? [];
  assert.is(lookups.length, 2, plan);
  assert.not.match(plan, 'function_deployments', plan);
  assert.not.match(plan, /Seq Scan/, plan);
});

s('MAX_INSTANCES_PER_USER: with one warm instance, another function of the same user is 429; others are served', async () => {
  const runner = new Runner(tp.platform, tp.driver);
  await runner.start();
  try {
    const api = await tp.newUser();
    const a = await deployAndBuild(api, 'inst-a', await fn('a'));
    const b = await deployAndBuild(api, 'inst-b', await fn('b'));
    assert.is(a.built.status, 'active');
    assert.is(b.built.status, 'active');
    // activation pre-warms each live version; b's pre-warm was refused by the quota
    assert.is((await api.post(`/api/functions/${a.id}/invoke`, {})).status, 200);
    assertQuota(await api.post(`/api/functions/${b.id}/invoke`, {}), 429, 'MAX_INSTANCES_PER_USER');
    assert.is((await api.post(`/api/functions/${a.id}/invoke`, {})).status, 200, 'the warm instance still serves');
    assert.is((await api.get(`/api/functions/${b.id}/instances`)).body.instances.length, 0);
    const other = await tp.newUser();
    const c = await deployAndBuild(other, 'inst-c', await fn('c'));
    assert.is((await other.post(`/api/functions/${c.id}/invoke`, {})).status, 200);
  } finally {
    await runner.stop(5000);
  }
});

s('the usage rows the quotas read agree with a recount, after every deploy, complete and refusal above', async () => {
  const counted = await assertUsageAgrees(tp.platform.db.knex);
  assert.ok(counted.functions > 0, 'there were functions to count');
  assert.ok(counted.archiveBytes > 0, 'and stored archives');
});

s.run();
