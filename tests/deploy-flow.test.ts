// The deploy paths end to end over HTTP: presigned upload, multipart upload, completion checks,
// history, event log and deletion — against a real database and a real S3-compatible server.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { assertUsageAgrees } from './support/usage.ts';
import { declaration, deployPresigned, sha256, simulateBuilt } from './support/flows.ts';
import { waitFor } from './support/services.ts';
import { enqueueBuildPgStatement } from '../shared/domain/build-queue.ts';

const MAX = 64 * 1024;
const t = await startTestPlatform({ MAX_ARCHIVE_BYTES: String(MAX) });
if (!t) process.exit(0);
const tp = t as TestPlatform;
// gzip's magic number and then anything: these tests never build, but a multipart deploy checks it
const archive = (text: string) => Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.from(`fake-gzip:${text}`)]);

const deploy = suite('deploy');

deploy('presigned flow: deploy → PUT → complete puts the exact key in S3 and queues a build', async () => {
  const api = await tp.newUser();
  const body = archive('v1');
  const res = await api.post('/api/functions/deploy', { name: 'hello', sizeBytes: body.length, sha256: sha256(body) });
  assert.is(res.status, 201);
  assert.is(res.body.name, 'hello');
  assert.is(res.body.version, 1);
  assert.is(res.body.status, 'pending_upload');
  assert.is(res.body.isNewFunction, true);
  assert.match(res.body.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.is(res.body.upload.method, 'PUT');
  // with the embedded S3 the upload goes through the API, never to the store's own port
  assert.ok(res.body.upload.url.startsWith(`${tp.url}/api/uploads/${res.body.deploymentId}?`), res.body.upload.url);
  assert.is(res.body.upload.headers['Content-Length'], String(body.length));
  const ttl = Date.parse(res.body.upload.expiresAt) - Date.now();
  // at least the TTL (the whole second is rounded up), at most a second more
  assert.ok(ttl > 850_000 && ttl <= 901_000, `expiresAt ~900 s ahead, got ${ttl} ms`);

  const put = await fetch(res.body.upload.url, { method: 'PUT', headers: res.body.upload.headers, body });
  assert.is(put.status, 200);
  const complete = await api.post(`/api/functions/${res.body.id}/deployments/1/complete`);
  assert.is(complete.status, 202);
  assert.equal(complete.body, { deploymentId: res.body.deploymentId, version: 1, status: 'building' });

  const stored = (await tp.platform.storage.digest(`functions/${res.body.id}/v1/function.tar.gz`))!;
  assert.is(stored.sha256, sha256(body));
  const detail = await api.get(`/api/functions/${res.body.id}/deployments/1`);
  assert.is(detail.body.status, 'building');
  assert.is(detail.body.sizeBytes, body.length);
  assert.is(detail.body.sha256, sha256(body));
  assert.is(detail.body.isActive, false);

  // calling complete again is harmless
  const again = await api.post(`/api/functions/${res.body.id}/deployments/1/complete`);
  assert.is(again.status, 202);
  assert.is(again.body.status, 'building');
  // a version never allocated: a 404 naming it, and nothing else changes
  const missing = await api.post(`/api/functions/${res.body.id}/deployments/9/complete`);
  assert.is(missing.status, 404, JSON.stringify(missing.body));
  assert.is(missing.body.error.code, 'version_not_found');

  const second = await deployPresigned(api, 'hello', archive('v2'));
  assert.is(second.version, 2);
  assert.is(second.isNewFunction, false);
  assert.is(second.id, res.body.id);
});

deploy('multipart flow: the API streams the archive to the same key and answers building', async () => {
  const api = await tp.newUser();
  const body = archive('multipart');
  const form = new FormData();
  form.set('name', 'multi');
  form.set('archive', new Blob([body]), 'function.tar.gz');
  const res = await api.request('POST', '/api/functions/deploy', { body: form });
  assert.is(res.status, 201, JSON.stringify(res.body));
  assert.is(res.body.status, 'building');
  assert.is(res.body.version, 1);
  assert.is(res.body.isNewFunction, true);
  assert.not.ok('upload' in res.body);
  const stored = (await tp.platform.storage.digest(`functions/${res.body.id}/v1/function.tar.gz`))!;
  assert.is(stored.sha256, sha256(body));
  const detail = await api.get(`/api/functions/${res.body.id}/deployments/1`);
  assert.is(detail.body.sha256, sha256(body));
});

deploy('multipart over MAX_ARCHIVE_BYTES: 413, no version allocated, nothing kept', async () => {
  const api = await tp.newUser();
  const form = new FormData();
  form.set('name', 'big');
  form.set('archive', new Blob([Buffer.alloc(MAX + 1, 7)]), 'function.tar.gz');
  const res = await api.request('POST', '/api/functions/deploy', { body: form });
  assert.is(res.status, 413);
  assert.is(res.body.error.code, 'payload_too_large');
  const list = await api.get('/api/functions');
  assert.equal(list.body.functions, []);
});

deploy('multipart without an archive or with a bad name: 400', async () => {
  const api = await tp.newUser();
  const noFile = new FormData();
  noFile.set('name', 'nofile');
  const a = await api.request('POST', '/api/functions/deploy', { body: noFile });
  assert.is(a.status, 400);
  const badName = new FormData();
  badName.set('name', 'Bad_Name');
  badName.set('archive', new Blob([archive('x')]), 'f.tar.gz');
  const b = await api.request('POST', '/api/functions/deploy', { body: badName });
  assert.is(b.status, 400);
  assert.is(b.body.error.code, 'validation_failed');
});

deploy('multipart whose file is not gzip: 400 at once, no version allocated, no temporary file left', async () => {
  const api = await tp.newUser();
  const form = new FormData();
  form.set('name', 'plain');
  form.set('archive', new Blob([Buffer.from('PK\u0003\u0004 a zip, not a tar.gz')]), 'function.zip');
  const res = await api.request('POST', '/api/functions/deploy', { body: form });
  assert.is(res.status, 400, JSON.stringify(res.body));
  assert.match(res.body.error.message, /not gzip/);
  assert.equal((await api.get('/api/functions')).body.functions, []);
  const tmp = path.join(tp.dataDir, 'upload-tmp');
  assert.equal(fs.existsSync(tmp) ? fs.readdirSync(tmp) : [], []);
});

deploy('a JSON deploy must declare sizeBytes and sha256: 400 saying why, no version allocated', async () => {
  const api = await tp.newUser();
  const none = await api.post('/api/functions/deploy', { name: 'undeclared' });
  assert.is(none.status, 400);
  assert.is(none.body.error.code, 'validation_failed');
  assert.match(none.body.error.message, /sizeBytes is required: the upload URL is bound to the archive's size/);
  assert.match(none.body.error.message, /sha256 is required/);
  const noSha = await api.post('/api/functions/deploy', { name: 'undeclared', sizeBytes: 10 });
  assert.is(noSha.status, 400);
  assert.match(noSha.body.error.message, /sha256 is required/);
  assert.equal((await api.get('/api/functions')).body.functions, []);
});

deploy('complete with no upload: 409 upload_missing and the deployment stays pending', async () => {
  const api = await tp.newUser();
  const res = await api.post('/api/functions/deploy', { name: 'lazy', ...declaration() });
  const complete = await api.post(`/api/functions/${res.body.id}/deployments/1/complete`);
  assert.is(complete.status, 409);
  assert.is(complete.body.error.code, 'upload_missing');
  const detail = await api.get(`/api/functions/${res.body.id}/deployments/1`);
  assert.is(detail.body.status, 'pending_upload');
});

deploy('declared size over the limit is refused at deploy time with 413', async () => {
  const api = await tp.newUser();
  const res = await api.post('/api/functions/deploy', { name: 'huge', ...declaration(), sizeBytes: MAX + 1 });
  assert.is(res.status, 413);
  assert.equal((await api.get('/api/functions')).body.functions, []);
});

const direct = suite('S3 presigned uploads (complete verifies what s3rver let through)');
const dp = (await startTestPlatform({ MAX_ARCHIVE_BYTES: String(MAX) }, { directS3: true }))!;
const withoutLength = (headers: Record<string, string>) =>
  Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'content-length'));

direct('an uploaded object over the limit: 413 at complete, deployment failed, object deleted', async () => {
  const api = await dp.newUser();
  const res = await api.post('/api/functions/deploy', { name: 'sneaky', ...declaration() });
  const key = `functions/${res.body.id}/v1/function.tar.gz`;
  // s3rver ignores the signed size (a real S3 would refuse this PUT), so a client can upload more
  // than it declared: complete must catch it
  const put = await fetch(res.body.upload.url, { method: 'PUT', headers: withoutLength(res.body.upload.headers), body: Buffer.alloc(MAX + 10) });
  assert.is(put.status, 200);
  const complete = await api.post(`/api/functions/${res.body.id}/deployments/1/complete`);
  assert.is(complete.status, 413);
  assert.is(await dp.platform.storage.head(key), null);
  const detail = await api.get(`/api/functions/${res.body.id}/deployments/1`);
  assert.is(detail.body.status, 'failed');
  assert.match(detail.body.error, /over the limit/);
});

direct('sha256 differing from the declared one: 422 checksum_mismatch, failed, object deleted', async () => {
  const api = await dp.newUser();
  const declared = archive('what I meant');
  const res = await api.post('/api/functions/deploy', { name: 'tampered', ...declaration(declared) });
  const key = `functions/${res.body.id}/v1/function.tar.gz`;
  // same length, other bytes: s3rver does not check the signed checksum (a real S3 would)
  const arrived = archive('what arrived');
  assert.is(arrived.length, declared.length);
  await fetch(res.body.upload.url, { method: 'PUT', headers: res.body.upload.headers, body: arrived });
  const complete = await api.post(`/api/functions/${res.body.id}/deployments/1/complete`);
  assert.is(complete.status, 422);
  assert.is(complete.body.error.code, 'checksum_mismatch');
  assert.is(await dp.platform.storage.head(key), null);
  const detail = await api.get(`/api/functions/${res.body.id}/deployments/1`);
  assert.is(detail.body.status, 'failed');
  assert.match(detail.body.error, /checksum mismatch/);
  // a later complete does not resurrect it
  const again = await api.post(`/api/functions/${res.body.id}/deployments/1/complete`);
  assert.is(again.status, 202);
  assert.is(again.body.status, 'failed');
});

direct('an expired upload URL is refused by S3', async () => {
  const short = await startTestPlatform({ UPLOAD_URL_TTL_SECONDS: '1' }, { directS3: true });
  try {
    const api = await short!.newUser();
    const res = await api.post('/api/functions/deploy', { name: 'slow', ...declaration(archive('late')) });
    const expiresAt = Date.parse(res.body.upload.expiresAt);
    // wait on the clock condition itself (bounded), then try
    await waitFor('the upload URL to expire', () => Date.now() > expiresAt + 1100, { timeoutMs: 5000 });
    const put = await fetch(res.body.upload.url, { method: 'PUT', headers: res.body.upload.headers, body: archive('late') });
    assert.is(put.status, 403);
    const complete = await api.post(`/api/functions/${res.body.id}/deployments/1/complete`);
    assert.is(complete.status, 409);
  } finally {
    await short!.close();
  }
});

const history = suite('history');

history('newest first, limit and before paginate without gaps', async () => {
  const api = await tp.newUser();
  let id = '';
  for (let i = 1; i <= 7; i++) id = (await api.post('/api/functions/deploy', { name: 'paged', ...declaration() })).body.id;
  const all = await api.get(`/api/functions/${id}/deployments`);
  assert.equal(all.body.deployments.map((d: any) => d.version), [7, 6, 5, 4, 3, 2, 1]);
  const d = all.body.deployments[0];
  for (const key of ['id', 'version', 'imageTag', 's3Key', 'status', 'isActive', 'deployedAt', 'createdAt', 'error']) {
    assert.ok(key in d, `deployment view has ${key}`);
  }
  assert.is(d.s3Key, `functions/${id}/v7/function.tar.gz`);
  const seen: number[] = [];
  let before: number | null = null;
  for (let page = 0; page < 5; page++) {
    const res: any = await api.get(`/api/functions/${id}/deployments?limit=3${before ? `&before=${before}` : ''}`);
    seen.push(...res.body.deployments.map((x: any) => x.version));
    before = res.body.nextBefore;
    if (before === null) break;
  }
  assert.equal(seen, [7, 6, 5, 4, 3, 2, 1]);
  const fn = await api.get(`/api/functions/${id}`);
  assert.is(fn.body.latestVersion, 7);
  assert.is(fn.body.activeVersion, null);
});

history('function view and list reflect the live version; logs record the lifecycle newest first', async () => {
  const api = await tp.newUser();
  const v1 = await deployPresigned(api, 'lifecycle', archive('1'));
  await simulateBuilt(tp.platform, v1.id, 1);
  const fn = await api.get(`/api/functions/${v1.id}`);
  assert.is(fn.status, 200);
  assert.is(fn.body.status, 'active');
  assert.is(fn.body.activeVersion, 1);
  assert.is(fn.body.activeDeploymentId, v1.deploymentId);
  const list = await api.get('/api/functions');
  assert.equal(list.body.functions.map((f: any) => [f.name, f.activeVersion, f.latestVersion]), [['lifecycle', 1, 1]]);
  const logs = await api.get(`/api/functions/${v1.id}/logs`);
  assert.equal(
    logs.body.logs.map((l: any) => l.event),
    ['activated', 'upload_completed', 'deploy_requested'],
  );
  const ids = logs.body.logs.map((l: any) => l.id);
  assert.equal(ids, [...ids].sort((a: number, b: number) => b - a));
});

const del = suite('delete');

del('DELETE removes the rows and the S3 object of every version', async () => {
  const api = await tp.newUser();
  const v1 = await deployPresigned(api, 'doomed', archive('1'));
  await deployPresigned(api, 'doomed', archive('2'));
  const keys = [1, 2].map((v) => `functions/${v1.id}/v${v}/function.tar.gz`);
  for (const k of keys) assert.ok(await tp.platform.storage.head(k));
  const res = await api.del(`/api/functions/${v1.id}`);
  assert.is(res.status, 204);
  for (const k of keys) assert.is(await tp.platform.storage.head(k), null);
  assert.is((await api.get(`/api/functions/${v1.id}`)).status, 404);
  const rows = await tp.platform.db.knex('function_deployments').where({ function_id: v1.id });
  assert.is(rows.length, 0);
  assert.is((await api.del(`/api/functions/${v1.id}`)).status, 404);
  // the name can be used again, starting a new function at version 1
  const again = await api.post('/api/functions/deploy', { name: 'doomed', ...declaration() });
  assert.is(again.body.version, 1);
  assert.is(again.body.isNewFunction, true);
});

del.after(() => tp.close());
direct.after(() => dp.close());

deploy("PostgreSQL finds the version a complete queues by its primary key, even when its statistics call pending uploads rare", async () => {
  // SQLite is never ANALYZEd: without statistics its planner takes the unique key. PostgreSQL's
  // statistics lag a burst of deploys (until autovacuum's next ANALYZE); with them, the complete's
  // UPDATE … WHERE id = ? AND status = 'pending_upload' read every pending upload through the index
  // on (status, lease_expires_at): 5.7 ms for 24,000 of them in the bench, instead of one row.
  if (tp.platform.db.dialect !== 'pg') return;
  const api = await tp.newUser();
  const made = await api.post('/api/functions/deploy', { name: 'plan-stale', ...declaration(archive('plan')) });
  assert.is(made.status, 201, JSON.stringify(made.body));
  const trx = await tp.platform.db.knex.transaction();
  try {
    // The statistics of a moment with no upload pending (after a quiet night, or a rollback-only
    // hour): the other suites' pending uploads set aside for it. ANALYZE is transactional: all of
    // this is rolled back.
    await trx.raw("UPDATE function_deployments SET status = 'failed' WHERE status = 'pending_upload'");
    await trx.raw('ANALYZE function_deployments');
    // then a burst of deploys: 20,000 uploads pending, copies of the version above
    await trx.raw(
      `INSERT INTO function_deployments
       SELECT r.* FROM function_deployments d, generate_series(1, 20000) g,
              LATERAL jsonb_populate_record(NULL::function_deployments, to_jsonb(d) || jsonb_build_object(
                'id', gen_random_uuid(), 'version', d.version + g, 's3_key', d.s3_key || '-' || g, 'status', 'pending_upload')) r
        WHERE d.id = ?`,
      [made.body.deploymentId],
    );
    const explain = async (sql: string, bindings: readonly unknown[]) =>
      ((await trx.raw(`EXPLAIN ${sql}`, bindings as any[])).rows as Record<string, string>[]).map((r) => r['QUERY PLAN']).join('\n');
    const enqueue = enqueueBuildPgStatement({ id: made.body.deploymentId, function_id: made.body.id, version: 1 }, { size: 1, sha256: 'x' }, { event: 'upload_completed', message: 'm' });
    const plan = await explain(enqueue.sql, enqueue.bindings);
    assert.match(plan, /Index Scan using function_deployments_pkey on function_deployments/, plan);
    assert.not.match(plan, 'status_lease_idx', plan);
  } finally {
    await trx.rollback();
  }
});

deploy.run();
direct.run();
history.run();
del('the usage rows the quotas read agree with a recount, after the deploys, completes and deletes above', async () => {
  const counted = await assertUsageAgrees(tp.platform.db.knex);
  assert.ok(counted.functions > 0, 'there were functions to count');
});

del.run();
