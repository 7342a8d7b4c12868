// Progressive delivery by hand, over real HTTP with a real runner and real instances, on SQLite and
// PostgreSQL: the traffic split (random and sticky), promotion, candidates that are not built,
// tags (path and invoke), approval (activate:false and requireApproval), and the one-live-version
// invariant under concurrent promotions and rollbacks.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction } from './support/archives.ts';
import { declaration, deployAndBuild, waitForBuild } from './support/flows.ts';
import type { Client } from './support/http.ts';
import { waitFor } from './support/services.ts';

const t = await startTestPlatform({ FUNCTION_IDLE_MS: '60000', FUNCTION_MAX_INSTANCES: '2' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;
const db = tp.platform.db.knex;

/** A function whose answers say which code served them. */
const versionSource = (label: string) => `
export default {
  async fetch(request) {
    return Response.json({ label: ${JSON.stringify(label)} });
  },
};
`;

const put = (api: Client, path: string, json: unknown) => api.request('PUT', path, { json });

/** A function with versions labelled v1..vn, all built; v1 live unless later ones went live too. */
async function builtVersions(api: Client, name: string, n: number) {
  let id = '';
  for (let v = 1; v <= n; v++) {
    const d = await deployAndBuild(api, name, await makeNodeFunction(versionSource(`v${v}`)));
    assert.is(d.built.status, 'active', JSON.stringify(d.built));
    id = d.id;
  }
  return id;
}

async function endpointOf(api: Client, id: string): Promise<string> {
  const fn = await api.get(`/api/functions/${id}`);
  return fn.body.url as string;
}

async function liveRows(functionId: string) {
  return db('function_deployments').where({ function_id: functionId }).andWhere('is_active', true);
}

/** Sends `n` requests, `width` at a time; returns how many each version served. */
async function spread(url: string, n: number, headers: (i: number) => Record<string, string> = () => ({}), width = 16) {
  const served = new Map<number, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        const res = await fetch(url, { headers: { authorization: `Bearer ${tokenFor.get(url)}`, ...headers(i) } });
        assert.is(res.status, 200, await res.clone().text());
        await res.arrayBuffer();
        const v = Number(res.headers.get('x-function-version'));
        served.set(v, (served.get(v) ?? 0) + 1);
      }
    }),
  );
  return served;
}
const tokenFor = new Map<string, string>();

// ----------------------------------------------------------------------------- traffic split

const split = suite('traffic split');

split('1,000 requests at 10 % land 5–15 % on the candidate; every answer names its version', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'split', 2);
  await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  const set = await put(api, `/api/functions/${id}/traffic`, { candidate: { version: 2, percent: 10 } });
  assert.is(set.status, 200, JSON.stringify(set.body));
  assert.equal(
    set.body.traffic.map((s: any) => [s.version, s.percent, s.role]),
    [
      [1, 90, 'live'],
      [2, 10, 'candidate'],
    ],
  );
  const url = await endpointOf(api, id);
  tokenFor.set(url, api.token);
  const served = await spread(url, 1000);
  const onCandidate = served.get(2) ?? 0;
  assert.is((served.get(1) ?? 0) + onCandidate, 1000);
  assert.ok(onCandidate >= 50 && onCandidate <= 150, `candidate served ${onCandidate} of 1000`);
  // the invoke API splits the same way and says which version answered
  const invoked = new Map<number, number>();
  for (let i = 0; i < 100; i++) {
    const r = await api.post(`/api/functions/${id}/invoke`, {});
    assert.is(r.status, 200);
    assert.is(Number(r.headers.get('x-function-version')), r.body.version);
    invoked.set(r.body.version, (invoked.get(r.body.version) ?? 0) + 1);
  }
  assert.ok((invoked.get(1) ?? 0) > 60, `live served ${invoked.get(1)} of 100 invocations`);
  const events = (await api.get(`/api/functions/${id}/logs`)).body.logs.map((l: any) => l.event);
  assert.ok(events.includes('traffic_changed'));
});

split('sticky: each traffic key keeps its version; without a key the endpoint sets a cookie that does', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'sticky', 2);
  await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  const set = await put(api, `/api/functions/${id}/traffic`, { candidate: { version: 2, percent: 50 }, sticky: true });
  assert.is(set.body.sticky, true);
  const url = await endpointOf(api, id);
  tokenFor.set(url, api.token);
  const first = new Map<string, number>();
  for (let k = 0; k < 40; k++) {
    const res = await fetch(url, { headers: { authorization: `Bearer ${api.token}`, 'x-traffic-key': `user-${k}` } });
    await res.arrayBuffer();
    first.set(`user-${k}`, Number(res.headers.get('x-function-version')));
    assert.is(res.headers.get('set-cookie'), null, 'a caller with a key gets no cookie');
  }
  const versions = new Set(first.values());
  assert.ok(versions.has(1) && versions.has(2), 'keys spread over both versions');
  for (let round = 0; round < 3; round++) {
    for (const [key, version] of first) {
      const r = await api.post(`/api/functions/${id}/invoke`, {}, { headers: { 'x-traffic-key': key } });
      assert.is(r.body.version, version, `key ${key} moved`);
    }
  }
  // no key: a cookie is set, and sending it back keeps the version
  const noKey = await fetch(`${url}/page`, { headers: { authorization: `Bearer ${api.token}` } });
  await noKey.arrayBuffer();
  const cookie = noKey.headers.get('set-cookie')!;
  assert.match(cookie, /^cp_traffic=[A-Za-z0-9_-]+; Path=\/fn\/[^;]+\/sticky; Max-Age=\d+; HttpOnly; SameSite=Lax$/);
  const version = Number(noKey.headers.get('x-function-version'));
  for (let i = 0; i < 10; i++) {
    const again = await fetch(url, { headers: { authorization: `Bearer ${api.token}`, cookie: cookie.split(';')[0]! } });
    await again.arrayBuffer();
    assert.is(Number(again.headers.get('x-function-version')), version);
    assert.is(again.headers.get('set-cookie'), null);
  }
});

split('DELETE …/traffic sends everything to the live version; the candidate must be built and not live', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'guards', 2);
  await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  // not built: a pending upload, then a failed version
  const pending = await api.post('/api/functions/deploy', { name: 'guards', ...declaration() });
  const refused = await put(api, `/api/functions/${id}/traffic`, { candidate: { version: pending.body.version, percent: 10 } });
  assert.is(refused.status, 409);
  assert.is(refused.body.error.code, 'version_not_built');
  assert.match(refused.body.error.message, /pending_upload/);
  const live = await put(api, `/api/functions/${id}/traffic`, { candidate: { version: 1, percent: 10 } });
  assert.is(live.status, 409);
  const missing = await put(api, `/api/functions/${id}/traffic`, { candidate: { version: 99, percent: 10 } });
  assert.is(missing.status, 404);
  for (const body of [{ candidate: { version: 2, percent: 101 } }, { candidate: { version: 2 } }, { candidate: { version: 2, percent: 5.5 } }, { candidate: { version: 2, percent: 5 }, extra: 1 }, {}]) {
    const bad = await put(api, `/api/functions/${id}/traffic`, body);
    assert.is(bad.status, 400, JSON.stringify(body));
    assert.is(bad.body.error.code, 'validation_failed');
  }
  assert.equal((await api.get(`/api/functions/${id}`)).body.traffic.map((s: any) => s.percent), [100]);

  await put(api, `/api/functions/${id}/traffic`, { candidate: { version: 2, percent: 100 } });
  assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.version, 2);
  const cleared = await api.del(`/api/functions/${id}/traffic`);
  assert.is(cleared.status, 200);
  assert.equal(cleared.body.traffic.map((s: any) => [s.version, s.percent]), [[1, 100]]);
  for (let i = 0; i < 20; i++) assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.version, 1);
  // another user's function is not there at all
  const other = await tp.newUser();
  assert.is((await put(other, `/api/functions/${id}/traffic`, { candidate: { version: 2, percent: 10 } })).status, 404);
});

// ----------------------------------------------------------------------------- promote

const promotion = suite('promote');

promotion('promote makes the candidate live in one step and ends the split', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'promo', 2);
  await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  const none = await api.post(`/api/functions/${id}/promote`);
  assert.is(none.status, 409);
  assert.is(none.body.error.code, 'no_candidate');
  await put(api, `/api/functions/${id}/traffic`, { candidate: { version: 2, percent: 30 } });
  const res = await api.post(`/api/functions/${id}/promote`);
  assert.is(res.status, 200, JSON.stringify(res.body));
  assert.is(res.body.version, 2);
  assert.is(res.body.previousVersion, 1);
  const fn = (await api.get(`/api/functions/${id}`)).body;
  assert.is(fn.activeVersion, 2);
  assert.equal(fn.traffic.map((s: any) => [s.version, s.percent, s.role]), [[2, 100, 'live']]);
  const live = await liveRows(id);
  assert.is(live.length, 1);
  assert.is(live[0].version, 2);
  for (let i = 0; i < 10; i++) assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.version, 2);
  const events = (await api.get(`/api/functions/${id}/logs`)).body.logs.map((l: any) => l.event);
  assert.ok(events.includes('promoted'));
});

promotion('concurrent promotions, splits and rollbacks never leave two live versions', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'race', 3);
  const moves: Promise<unknown>[] = [];
  for (let i = 0; i < 8; i++) {
    moves.push(put(api, `/api/functions/${id}/traffic`, { candidate: { version: 1 + (i % 3), percent: 50 } }));
    moves.push(api.post(`/api/functions/${id}/promote`));
    moves.push(api.post(`/api/functions/${id}/rollback`, { version: 1 + ((i + 1) % 3) }));
  }
  const answers = (await Promise.all(moves)) as { status: number }[];
  for (const a of answers) assert.ok([200, 409].includes(a.status), `answered ${a.status}`);
  const live = await liveRows(id);
  assert.is(live.length, 1);
  const fn = (await api.get(`/api/functions/${id}`)).body;
  assert.is(fn.activeVersion, live[0].version);
  const roles = fn.traffic.map((s: any) => s.role);
  assert.is(roles.filter((r: string) => r === 'live').length, 1);
  if (fn.traffic.length === 2) assert.is.not(fn.traffic[0].version, fn.traffic[1].version);
});

promotion('a rollback ends the split: only the version asked for serves', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'rb-split', 3);
  await put(api, `/api/functions/${id}/traffic`, { candidate: { version: 2, percent: 50 } });
  const rb = await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  assert.is(rb.status, 200);
  const fn = (await api.get(`/api/functions/${id}`)).body;
  assert.equal(fn.traffic.map((s: any) => [s.version, s.percent]), [[1, 100]]);
  for (let i = 0; i < 20; i++) assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.version, 1);
});

// ----------------------------------------------------------------------------- tags

const tags = suite('tags');

tags('a tag serves its version at @tag and ?tag=, moves on the next request, and follows the access mode', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'tagged', 3);
  const set = await put(api, `/api/functions/${id}/tags/beta`, { version: 2 });
  assert.is(set.status, 200, JSON.stringify(set.body));
  assert.equal({ tag: set.body.tag, version: set.body.version }, { tag: 'beta', version: 2 });
  const url = await endpointOf(api, id);
  const viaPath = await fetch(`${url}@beta/anything`, { headers: { authorization: `Bearer ${api.token}` } });
  assert.is(viaPath.status, 200);
  assert.equal(await viaPath.json(), { label: 'v2' });
  assert.is(viaPath.headers.get('x-function-version'), '2');
  const viaInvoke = await api.post(`/api/functions/${id}/invoke?tag=beta`, {});
  assert.is(viaInvoke.body.version, 2);
  // moving it takes effect on the very next request
  assert.is((await put(api, `/api/functions/${id}/tags/beta`, { version: 1 })).status, 200);
  assert.is((await api.post(`/api/functions/${id}/invoke?tag=beta`, {})).body.version, 1);
  const moved = await fetch(`${url}@beta`, { headers: { authorization: `Bearer ${api.token}` } });
  assert.equal(await moved.json(), { label: 'v1' });
  // history shows it; the list shows it
  const history = (await api.get(`/api/functions/${id}/deployments`)).body.deployments;
  assert.equal(history.find((d: any) => d.version === 1).tags, ['beta']);
  assert.equal(history.find((d: any) => d.version === 2).tags, []);
  assert.equal((await api.get(`/api/functions/${id}/deployments/1`)).body.tags, ['beta']);
  assert.equal((await api.get(`/api/functions/${id}/tags`)).body.tags.map((x: any) => [x.tag, x.version]), [['beta', 1]]);
  // private: anonymous callers are refused at @tag as at the function; public: anyone may call it
  assert.is((await fetch(`${url}@beta`)).status, 401);
  await api.request('PATCH', `/api/functions/${id}`, { json: { access: 'public' } });
  const anon = await fetch(`${url}@beta`);
  assert.is(anon.status, 200);
  assert.is(anon.headers.get('x-function-version'), '1');
  // unknown and removed tags
  assert.is((await fetch(`${url}@nope`)).status, 404);
  assert.is((await api.del(`/api/functions/${id}/tags/beta`)).status, 204);
  const gone = await api.post(`/api/functions/${id}/invoke?tag=beta`, {});
  assert.is(gone.status, 404);
  assert.is(gone.body.error.code, 'tag_not_found');
  assert.is((await api.del(`/api/functions/${id}/tags/beta`)).status, 404);
});

tags('bad tags and unbuilt versions are refused', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'tagcheck', 1);
  for (const tag of ['Beta', '1abc', 'v2', 'a'.repeat(32), 'with_underscore']) {
    const bad = await put(api, `/api/functions/${id}/tags/${tag}`, { version: 1 });
    assert.is(bad.status, 400, tag);
    assert.is(bad.body.error.code, 'validation_failed');
  }
  assert.is((await put(api, `/api/functions/${id}/tags/ok`, { version: 'one' })).status, 400);
  assert.is((await put(api, `/api/functions/${id}/tags/ok`, { version: 9 })).status, 404);
  const pending = await api.post('/api/functions/deploy', { name: 'tagcheck', ...declaration() });
  const notBuilt = await put(api, `/api/functions/${id}/tags/ok`, { version: pending.body.version });
  assert.is(notBuilt.status, 409);
  assert.is(notBuilt.body.error.code, 'version_not_built');
  assert.is((await api.post(`/api/functions/${id}/invoke?tag=ok&version=1`, {})).status, 400);
});

// ----------------------------------------------------------------------------- approval

const approval = suite('approval');

approval('a deploy with activate:false builds and never goes live by itself; approve makes it live and says who', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'gated', 1);
  const archive = await makeNodeFunction(versionSource('v2'));
  const deploy = await api.post('/api/functions/deploy', { name: 'gated', activate: false, ...declaration(archive) });
  assert.is(deploy.status, 201);
  await fetch(deploy.body.upload.url, { method: 'PUT', headers: deploy.body.upload.headers, body: archive });
  await api.post(`/api/functions/${id}/deployments/2/complete`);
  const built = await waitForBuild(api, id, 2);
  assert.is(built.status, 'active');
  assert.is(built.isActive, false);
  assert.is(built.awaitingApproval, true);
  await waitFor('the awaiting_approval event', async () =>
    (await api.get(`/api/functions/${id}/logs`)).body.logs.some((l: any) => l.event === 'awaiting_approval') || undefined,
  );
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
  for (let i = 0; i < 5; i++) assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.version, 1);
  // it can be tried by version before it is approved
  assert.is((await api.post(`/api/functions/${id}/invoke?version=2`, {})).body.version, 2);

  const approved = await api.post(`/api/functions/${id}/approve`, { version: 2 });
  assert.is(approved.status, 200, JSON.stringify(approved.body));
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 2);
  const v2 = (await api.get(`/api/functions/${id}/deployments/2`)).body;
  assert.is(v2.awaitingApproval, false);
  const me = (await api.get('/api/auth/me')).body;
  assert.is(v2.approvedBy, me.email);
  assert.ok(Date.parse(v2.approvedAt) > 0);
  const approvedEvent = (await api.get(`/api/functions/${id}/logs`)).body.logs.find((l: any) => l.event === 'approved');
  assert.match(approvedEvent.message, new RegExp(`approved by ${me.email.replace(/[.+]/g, '\\$&')}`));
});

approval('requireApproval: every deploy waits; a split with it approves it; the setting is shown and validated', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'strict', 1);
  const patched = await api.request('PATCH', `/api/functions/${id}`, { json: { requireApproval: true } });
  assert.is(patched.status, 200);
  assert.is(patched.body.requireApproval, true);
  assert.is((await api.request('PATCH', `/api/functions/${id}`, { json: { requireApproval: 'yes' } })).status, 400);
  assert.is((await api.request('PATCH', `/api/functions/${id}`, { json: {} })).status, 400);
  const d = await deployAndBuild(api, 'strict', await makeNodeFunction(versionSource('v2')));
  assert.is(d.built.status, 'active');
  assert.is(d.built.isActive, false);
  assert.is(d.built.awaitingApproval, true);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
  // a candidate with 20 % of the traffic: approved by that
  const split = await put(api, `/api/functions/${id}/traffic`, { candidate: { version: 2, percent: 20 } });
  assert.is(split.status, 200);
  const v2 = (await api.get(`/api/functions/${id}/deployments/2`)).body;
  assert.is(v2.awaitingApproval, false);
  assert.ok(v2.approvedBy);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
  // a configuration change is a release too: it waits as well
  const change = await api.request('PATCH', `/api/functions/${id}/config`, { json: { env: { MODE: 'x' } } });
  assert.is(change.status, 202, JSON.stringify(change.body));
  const v3 = await waitForBuild(api, id, change.body.version);
  assert.is(v3.status, 'active');
  assert.is(v3.awaitingApproval, true);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
  assert.is((await liveRows(id)).length, 1);
});

approval('a multipart deploy with activate=false waits too; a bad value is a 400', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'multi', 1);
  const archive = await makeNodeFunction(versionSource('v2'));
  const form = new FormData();
  form.set('name', 'multi');
  form.set('activate', 'false');
  form.set('archive', new Blob([archive]), 'function.tar.gz');
  const res = await api.request('POST', '/api/functions/deploy', { body: form });
  assert.is(res.status, 201, JSON.stringify(res.body));
  const built = await waitForBuild(api, id, res.body.version);
  assert.is(built.awaitingApproval, true);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
  const bad = new FormData();
  bad.set('name', 'multi');
  bad.set('activate', 'maybe');
  bad.set('archive', new Blob([archive]), 'function.tar.gz');
  const refused = await api.request('POST', '/api/functions/deploy', { body: bad });
  assert.is(refused.status, 400);
});

approval.after(async () => {
  await tp.close();
});

split.run();
promotion.run();
tags.run();
approval.run();
