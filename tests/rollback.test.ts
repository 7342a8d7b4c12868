// Rollback over HTTP and the activation rule underneath it: exactly one live version, always, and
// for finished builds the latest intent wins.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { activateDeployment } from '../shared/domain/activation.ts';
import { LiveRoutes } from '../shared/domain/live-routes.ts';
import { onFunctionChangedLocally, type KnownRouteChange } from '../shared/domain/function-changes.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { declaration, deployPresigned, simulateBuilt } from './support/flows.ts';

const t = await startTestPlatform();
if (!t) process.exit(0);
const tp = t as TestPlatform;
const archive = (v: string) => Buffer.from(`archive ${v}`);

async function activeRows(functionId: string) {
  return tp.platform.db.knex('function_deployments').where({ function_id: functionId }).andWhere('is_active', true);
}

/** A function with versions 1..n deployed and built in order (n live). */
async function builtFunction(name: string, n: number) {
  const api = await tp.newUser();
  let id = '';
  for (let v = 1; v <= n; v++) {
    id = (await deployPresigned(api, name, archive(`${v}`))).id;
    await simulateBuilt(tp.platform, id, v);
  }
  return { api, id };
}

const rollback = suite('rollback');

rollback('rolls back to an earlier built version in one step, with the seed message', async () => {
  const { api, id } = await builtFunction('rb', 3);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 3);
  const res = await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  assert.is(res.status, 200);
  assert.is(res.body.message, 'Successfully rolled back to version 1');
  assert.is(res.body.version, 1);
  const v1 = (await api.get(`/api/functions/${id}/deployments/1`)).body;
  assert.is(res.body.deploymentId, v1.id);
  assert.is(v1.isActive, true);
  const fn = (await api.get(`/api/functions/${id}`)).body;
  assert.is(fn.activeVersion, 1);
  assert.is(fn.activeDeploymentId, v1.id);
  const active = await activeRows(id);
  assert.is(active.length, 1);
  assert.is(active[0].version, 1);
  const history = (await api.get(`/api/functions/${id}/deployments`)).body.deployments;
  assert.equal(history.map((d: any) => [d.version, d.isActive]), [[3, false], [2, false], [1, true]]);
  const logs = (await api.get(`/api/functions/${id}/logs?limit=1`)).body.logs;
  assert.is(logs[0].event, 'rolled_back');
});

rollback("the serving process's cached route after a rollback is the route as the database has it", async () => {
  // the rollback hands this process's routing cache the switch it made instead of a re-read: what
  // the cache then serves must equal a fresh read (live version, candidate gone, tags, owner)
  const { api, id } = await builtFunction('cached-route', 3);
  // each version with a configuration of its own, so that the route's configuration is checked too
  for (const v of [1, 2, 3]) {
    await tp.platform.db.knex('function_deployments').where({ function_id: id, version: v }).update({ config: JSON.stringify({ env: { V: String(v) } }) });
  }
  assert.is((await api.request('PUT', `/api/functions/${id}/tags/stable`, { json: { version: 1 } })).status, 200);
  assert.is((await api.request('PUT', `/api/functions/${id}/traffic`, { json: { candidate: { version: 2, percent: 10 }, sticky: true } })).status, 200);
  const fresh = () => new LiveRoutes(tp.platform.db, () => false).get(id);
  const before = await tp.invoker.routes.get(id);
  assert.equal(before, await fresh(), 'cached before the rollback');
  assert.is(before!.candidate?.version, 2);
  for (const [version, why] of [[1, 'a switch'], [1, 'a no-op'], [3, 'a switch back']] as const) {
    assert.is((await api.post(`/api/functions/${id}/rollback`, { version })).status, 200);
    const cached = await tp.invoker.routes.get(id);
    assert.equal(cached, await fresh(), why);
    assert.is(cached!.live?.version, version);
    assert.is(cached!.candidate, null);
    assert.is(cached!.tags.get('stable')?.version, 1);
    assert.equal(cached!.live?.config.env, { V: String(version) });
  }
});

rollback("concurrent rollbacks of one function: this process's cached route is the live version, whatever order their answers came back in", async () => {
  const { api, id } = await builtFunction('routes-race', 3);
  const fresh = () => new LiveRoutes(tp.platform.db, () => false).get(id);
  await tp.invoker.routes.get(id);
  for (let round = 0; round < 3; round++) {
    const answers = await Promise.all([1, 2, 3, 1, 2, 3, 2, 1].map((version) => api.post(`/api/functions/${id}/rollback`, { version })));
    for (const a of answers) assert.is(a.status, 200, JSON.stringify(a.body));
    const [live] = await activeRows(id);
    const cached = await tp.invoker.routes.get(id);
    assert.is(cached!.live?.version, Number(live.version), `round ${round}: the cached route serves the live version`);
    assert.equal(cached, await fresh());
  }
});

rollback('switches known to this process that reach its route cache out of order: the newest intent stays', async () => {
  const { api, id } = await builtFunction('routes-order', 3);
  const changes: KnownRouteChange[] = [];
  const off = onFunctionChangedLocally((fn, change) => {
    if (fn === id && change) changes.push(change);
  });
  try {
    assert.is((await api.post(`/api/functions/${id}/rollback`, { version: 1 })).status, 200);
    assert.is((await api.post(`/api/functions/${id}/rollback`, { version: 2 })).status, 200);
  } finally {
    off();
  }
  assert.equal(changes.map((c) => c.live.version), [1, 2]);
  const routes = new LiveRoutes(tp.platform.db, () => false);
  const cached = await routes.get(id);
  assert.is(cached!.live?.version, 2);
  // the second switch's news first, then the first's, as two requests may finish
  routes.switchLive(id, changes[1]!.live, changes[1]!.intent);
  routes.switchLive(id, changes[0]!.live, changes[0]!.intent);
  assert.is((await routes.get(id))!.live?.version, 2, 'the older switch changed nothing');
  assert.equal(await routes.get(id), await new LiveRoutes(tp.platform.db, () => false).get(id));
});

rollback('the version already live is a 200 no-op', async () => {
  const { api, id } = await builtFunction('noop', 2);
  const res = await api.post(`/api/functions/${id}/rollback`, { version: 2 });
  assert.is(res.status, 200);
  assert.is(res.body.version, 2);
  assert.is((await activeRows(id)).length, 1);
});

rollback('each rollback does the whole switch: a plain one names the caller, one to a version awaiting approval approves it first', async () => {
  // On PostgreSQL a plain switch (nothing but the live version changes) is written in one
  // statement guarded by what it reads, and anything more takes the two-message path: both must
  // write what the rule says, event messages included.
  const { api, id } = await builtFunction('gate', 3);
  const me = (await api.get('/api/auth/me')).body;
  const v1 = await tp.platform.db.knex('function_deployments').where({ function_id: id, version: 1 }).first('id');
  // version 1 as a deploy with activate:false leaves it once built: it waits for approval
  await tp.platform.db.knex('function_deployments').where({ id: v1.id }).update({ auto_activate: false, approved_at: null, approved_by: null });
  const plain = await api.post(`/api/functions/${id}/rollback`, { version: 2 });
  assert.is(plain.status, 200);
  const approving = await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  assert.is(approving.status, 200, JSON.stringify(approving.body));
  const dep1 = (await api.get(`/api/functions/${id}/deployments/1`)).body;
  assert.is(dep1.isActive, true);
  assert.is(dep1.awaitingApproval, false);
  assert.is(dep1.approvedBy, me.email);
  const logs = (await api.get(`/api/functions/${id}/logs?limit=3`)).body.logs;
  assert.equal(
    logs.map((l: any) => [l.event, l.version, l.message]),
    [
      ['rolled_back', 1, `rolled back to version 1 by ${me.email}`],
      ['approved', 1, `version 1 approved by ${me.email} (rollback)`],
      ['rolled_back', 2, `rolled back to version 2 by ${me.email}`],
    ],
  );
  const fn = await tp.platform.db.knex('functions').where({ id }).first('intent_seq', 'active_intent_seq', 'status');
  assert.is(Number(fn.active_intent_seq), Number(fn.intent_seq), 'each switch is the newest intent');
  assert.is(fn.status, 'active');
  assert.is((await activeRows(id)).length, 1);
});

rollback('unknown version: 404; unbuilt target: 409 naming its status; nothing changes', async () => {
  const { api, id } = await builtFunction('guard', 1);
  const missing = await api.post(`/api/functions/${id}/rollback`, { version: 99 });
  assert.is(missing.status, 404);
  assert.is(missing.body.error.code, 'version_not_found');
  await api.post('/api/functions/deploy', { name: 'guard', ...declaration() }); // v2 pending_upload
  const pending = await api.post(`/api/functions/${id}/rollback`, { version: 2 });
  assert.is(pending.status, 409);
  assert.is(pending.body.error.code, 'version_not_built');
  assert.match(pending.body.error.message, /pending_upload/);
  await deployPresigned(api, 'guard', archive('3')); // v3 building
  const building = await api.post(`/api/functions/${id}/rollback`, { version: 3 });
  assert.is(building.status, 409);
  assert.match(building.body.error.message, /building/);
  await tp.platform.db.knex('function_deployments').where({ function_id: id, version: 3 }).update({ status: 'failed', error: 'boom' });
  const failed = await api.post(`/api/functions/${id}/rollback`, { version: 3 });
  assert.is(failed.status, 409);
  assert.match(failed.body.error.message, /failed/);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
});

rollback('concurrent rollbacks between versions never leave two or zero live rows', async () => {
  const { api, id } = await builtFunction('race', 4);
  const targets = Array.from({ length: 40 }, (_, i) => (i % 4) + 1);
  const results = await Promise.all(targets.map((v) => api.post(`/api/functions/${id}/rollback`, { version: v })));
  for (const r of results) assert.is(r.status, 200, JSON.stringify(r.body));
  const active = await activeRows(id);
  assert.is(active.length, 1);
  const fn = (await api.get(`/api/functions/${id}`)).body;
  assert.is(fn.activeDeploymentId, active[0].id);
});

rollback('concurrent rollbacks and finishing builds: one live row, and the last switch is the live version', async () => {
  const { api, id } = await builtFunction('mixed', 3);
  // v4..v9 requested (each takes an intent tick), their builds finishing amid the rollbacks
  for (let v = 4; v <= 9; v++) await deployPresigned(api, 'mixed', archive(`${v}`));
  const moves: Promise<unknown>[] = [];
  for (let i = 0; i < 30; i++) {
    moves.push(api.post(`/api/functions/${id}/rollback`, { version: (i % 3) + 1 }).then((r) => assert.is(r.status, 200, JSON.stringify(r.body))));
    if (i % 5 === 0) moves.push(simulateBuilt(tp.platform, id, 4 + i / 5));
  }
  await Promise.all(moves);
  const active = await activeRows(id);
  assert.is(active.length, 1);
  const fn = await tp.platform.db.knex('functions').where({ id }).first();
  assert.is(fn.active_deployment_id, active[0].id);
  // no built version with a newer intent than the live one's was passed over
  const built = await tp.platform.db.knex('function_deployments').where({ function_id: id, status: 'active' });
  for (const d of built) assert.ok(Number(d.intent_seq) <= Number(fn.active_intent_seq), `v${d.version}'s intent ${d.intent_seq} > live ${fn.active_intent_seq}`);
  assert.ok(Number(fn.intent_seq) >= Number(fn.active_intent_seq));
  // switches are serialized: the newest switch event names the live version
  const last = await tp.platform.db.knex('function_logs')
    .where({ function_id: id })
    .whereIn('event', ['rolled_back', 'activated'])
    .orderBy('id', 'desc')
    .first();
  assert.is(Number(last.version), Number(active[0].version));
});

const intent = suite('activation: latest intent wins');

intent('v3 takes over even when v2 finishes building after it', async () => {
  const { api, id } = await builtFunction('order', 1);
  await deployPresigned(api, 'order', archive('2'));
  await deployPresigned(api, 'order', archive('3'));
  const r3 = await simulateBuilt(tp.platform, id, 3);
  assert.ok(r3.activated);
  const r2 = await simulateBuilt(tp.platform, id, 2);
  assert.equal(r2, { activated: false, reason: 'superseded' });
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 3);
  const v2 = (await api.get(`/api/functions/${id}/deployments/2`)).body;
  assert.is(v2.status, 'active', 'v2 is built and can be rolled back to');
  assert.is(v2.isActive, false);
});

intent('a build requested before a rollback never overrides that rollback', async () => {
  const { api, id } = await builtFunction('respect', 2);
  await deployPresigned(api, 'respect', archive('3')); // requested...
  const rb = await api.post(`/api/functions/${id}/rollback`, { version: 1 }); // ...then the user rolls back
  assert.is(rb.status, 200);
  const r3 = await simulateBuilt(tp.platform, id, 3); // v3's build finishes last
  assert.equal(r3, { activated: false, reason: 'superseded' });
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
  // a deploy requested after the rollback does take over when built
  await deployPresigned(api, 'respect', archive('4'));
  assert.ok((await simulateBuilt(tp.platform, id, 4)).activated);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 4);
});

intent('rolling back to the version already live still outranks a build requested before it', async () => {
  const { api, id } = await builtFunction('keep', 1);
  await deployPresigned(api, 'keep', archive('2')); // v2 requested and building
  const rb = await api.post(`/api/functions/${id}/rollback`, { version: 1 }); // "stay on v1"
  assert.is(rb.status, 200);
  assert.equal(await simulateBuilt(tp.platform, id, 2), { activated: false, reason: 'superseded' });
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
});

intent('activating an unbuilt deployment is refused and changes nothing', async () => {
  const { api, id } = await builtFunction('strict', 1);
  const d2 = await deployPresigned(api, 'strict', archive('2'));
  try {
    await activateDeployment(tp.platform.db, { functionId: id, deploymentId: d2.deploymentId, reason: { kind: 'rollback', actor: null } });
    assert.unreachable('should refuse');
  } catch (err) {
    assert.is((err as any).code, 'version_not_built');
  }
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
});

intent('the database itself refuses a second active row (partial unique index)', async () => {
  const { id } = await builtFunction('index', 2);
  try {
    await tp.platform.db.knex('function_deployments').where({ function_id: id }).update({ is_active: true });
    assert.unreachable('the partial unique index should refuse two active rows');
  } catch (err) {
    assert.match(String((err as Error).message), /unique|UNIQUE/);
  }
  assert.is((await activeRows(id)).length, 1);
});

intent.after(() => tp.close());
rollback.run();
intent.run();
