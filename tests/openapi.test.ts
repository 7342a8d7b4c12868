// The OpenAPI document: every route of the app is in it (and nothing that is not a route), it is
// served at /openapi.json with the reference at /docs, and it can fail an answer. Then the
// function's name in place of its id, on every /api/functions/{id}… route, for its owner only.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createApi } from '../api/server.ts';
import { checkDocumented, openApiPath } from '../api/openapi.ts';
import { routeDocs } from '../api/openapi-routes.ts';
import { makeNodeFunction } from './support/archives.ts';
import { declaration, deployAndBuild, deployPresigned, simulateBuilt } from './support/flows.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';

const t = await startTestPlatform({}, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

const key = (method: string, path: string) => `${method.toUpperCase()} ${openApiPath(path)}`;
const documented = new Set(routeDocs.map((d) => key(d.method, d.path)));

/** The routes Hono serves (middleware registered with app.use is method ALL, and is not a route). */
function honoRoutes(app: ReturnType<typeof createApi>): Set<string> {
  return new Set(app.routes.filter((r) => r.method !== 'ALL').map((r) => key(r.method, r.path)));
}

const coverage = suite('the document covers the route table');

coverage('every route of the app is in /openapi.json, with its request and responses', async () => {
  for (const app of [createApi(tp.platform, { driver: tp.driver, invoker: tp.invoker }), createApi(tp.platform)]) {
    const routes = honoRoutes(app);
    assert.ok(routes.size > 30, `only ${routes.size} routes found`);
    const missing = [...routes].filter((r) => !documented.has(r));
    assert.equal(missing, [], `routes missing from the OpenAPI document (add a line to api/openapi-routes.ts): ${missing.join(', ')}`);
  }
  const res = await tp.http.get('/openapi.json');
  assert.is(res.status, 200);
  assert.is(res.body.openapi, '3.1.0');
  for (const r of honoRoutes(createApi(tp.platform, { driver: tp.driver, invoker: tp.invoker }))) {
    const [method, path] = r.split(' ') as [string, string];
    const op = res.body.paths[path]?.[method.toLowerCase()];
    assert.ok(op, `${r} is not in the served document`);
    assert.ok(Object.keys(op.responses).some((s) => /^2\d\d$/.test(s)), `${r} documents no success answer`);
    assert.ok(Object.keys(op.responses).some((s) => /^5\d\d$/.test(s)), `${r} documents no error answer`);
    const params = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
    for (const p of params) assert.ok(op.parameters?.some((x: any) => x.name === p && x.in === 'path'), `${r}: path parameter ${p} is not documented`);
  }
});

coverage('nothing is documented that the app does not serve (the endpoints are served ahead of Hono)', () => {
  const routes = honoRoutes(createApi(tp.platform, { driver: tp.driver, invoker: tp.invoker }));
  const stale = routeDocs.filter((d) => !d.outsideHono && !routes.has(key(d.method, d.path))).map((d) => key(d.method, d.path));
  assert.equal(stale, [], `documented, but no such route: ${stale.join(', ')}`);
  for (const path of ['/fn/{handle}/{name}', '/fn/{handle}/{name}/{path}']) {
    assert.ok(routeDocs.some((d) => d.outsideHono && openApiPath(d.path) === path && d.method === 'post'), `${path} is not documented`);
  }
});

coverage('the document says what the requests take: body, query and error codes, from the validating schemas', async () => {
  const doc = (await tp.http.get('/openapi.json')).body;
  const rollback = doc.paths['/api/functions/{id}/rollback'].post;
  assert.equal(rollback.requestBody.content['application/json'].schema.required, ['version']);
  assert.ok(rollback.responses['404'].content['application/json'].schema.properties.error.properties.code.enum.includes('version_not_found'));
  assert.ok(rollback.responses['401'], 'an authenticated route documents its 401');
  const history = doc.paths['/api/functions/{id}/deployments'].get;
  assert.equal(history.parameters.filter((p: any) => p.in === 'query').map((p: any) => p.name).sort(), ['before', 'limit']);
  const deploy = doc.paths['/api/functions/deploy'].post.requestBody.content;
  assert.ok(deploy['application/json'] && deploy['multipart/form-data']);
  const upload = doc.paths['/api/uploads/{deploymentId}'].put;
  assert.equal(upload.security, [], 'the upload URL needs no token');
  assert.ok(doc.paths['/fn/{handle}/{name}/{path}'].get.responses.default);
});

coverage('GET /docs serves the interactive reference, pointed at /openapi.json', async () => {
  const res = await tp.http.get('/docs');
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/html/);
  assert.match(String(res.body), /\/openapi\.json/);
});

coverage('an answer of the wrong shape, status or error code fails the check', async () => {
  const api = await tp.newUser();
  const d = await deployPresigned(api, 'shape', Buffer.from('shape'));
  const res = await api.get(`/api/functions/${d.id}`);
  const path = `/api/functions/${d.id}`;
  assert.equal(checkDocumented(routeDocs, { method: 'GET', path }, res), []);
  const { latestVersion: _, ...withoutField } = res.body;
  assert.match(checkDocumented(routeDocs, { method: 'GET', path }, { ...res, body: withoutField }).join('\n'), /latestVersion/);
  assert.match(checkDocumented(routeDocs, { method: 'GET', path }, { ...res, body: { ...res.body, extra: 1 } }).join('\n'), /extra/);
  assert.match(checkDocumented(routeDocs, { method: 'GET', path }, { ...res, body: { ...res.body, activeVersion: '1' } }).join('\n'), /activeVersion/);
  assert.match(checkDocumented(routeDocs, { method: 'GET', path }, { ...res, status: 201 }).join('\n'), /201/);
  const error = { status: 409, body: { error: { code: 'canary_running', message: 'x' } }, headers: new Headers({ 'x-containerpub-error': 'canary_running' }) };
  assert.match(checkDocumented(routeDocs, { method: 'GET', path }, error).join('\n'), /409/);
  assert.equal(checkDocumented(routeDocs, { method: 'POST', path: `${path}/rollback` }, error), []);
  assert.match(checkDocumented(routeDocs, { method: 'GET', path: '/api/nowhere' }, { ...res, status: 200 }).join('\n'), /no documented route/);
});

const byName = suite('a function by its name in place of its id');

byName('history, rollback, config, logs and deployments by name; another user\'s name is a 404', async () => {
  const api = await tp.newUser();
  let id = '';
  for (let v = 1; v <= 3; v++) {
    id = (await deployPresigned(api, 'named', Buffer.from(`named ${v}`))).id;
    await simulateBuilt(tp.platform, id, v);
  }
  const fn = await api.get('/api/functions/named');
  assert.is(fn.status, 200);
  assert.is(fn.body.id, id);
  const history = await api.get('/api/functions/named/deployments?limit=2');
  assert.equal(history.body.deployments.map((d: any) => d.version), [3, 2]);
  assert.is((await api.get('/api/functions/named/deployments/1')).body.version, 1);
  const rolled = await api.post('/api/functions/named/rollback', { version: 1 });
  assert.is(rolled.status, 200, JSON.stringify(rolled.body));
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
  assert.is((await api.get('/api/functions/named/logs?limit=1')).body.logs[0].event, 'rolled_back');
  assert.is((await api.get('/api/functions/named/deployments/1/compare/3')).status, 200);
  assert.is((await api.get('/api/functions/named/config')).status, 200);

  // another user's function, by its name: exactly like no function at all
  const other = await tp.newUser();
  for (const path of ['/api/functions/named', '/api/functions/named/deployments']) {
    const res = await other.get(path);
    assert.is(res.status, 404, path);
    assert.is(res.body.error.code, 'function_not_found');
  }
  const theirs = await other.post('/api/functions/named/rollback', { version: 1 });
  assert.is(theirs.body.error.code, 'function_not_found');
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1, "another user's rollback by name changed nothing");
  assert.is((await api.get('/api/functions/nothing-here')).body.error.code, 'function_not_found');
  // neither an id nor a name: still a 400 saying so
  const bad = await api.get(`/api/functions/${encodeURIComponent('Not A Name')}`);
  assert.is(bad.status, 400);
  assert.match(bad.body.error.message, /neither a function id/);
  // the other user's own function of the same name is theirs
  const mine = await deployPresigned(other, 'named', Buffer.from('other named'));
  assert.is((await other.get('/api/functions/named')).body.id, mine.id);
  assert.is((await api.get('/api/functions/named')).body.id, id);
});

byName('a function named "deploy": POST /api/functions/deploy still deploys, its other routes take the name', async () => {
  const api = await tp.newUser();
  const first = await api.post('/api/functions/deploy', { name: 'deploy', ...declaration(Buffer.from('d1')) });
  assert.is(first.status, 201);
  await simulateBuilt(tp.platform, first.body.id, 1);
  const second = await api.post('/api/functions/deploy', { name: 'deploy', ...declaration(Buffer.from('d2')) });
  assert.is(second.status, 201, 'the literal route wins over the name');
  assert.is(second.body.version, 2);
  assert.is(second.body.id, first.body.id);
  const fn = await api.get('/api/functions/deploy');
  assert.is(fn.body.id, first.body.id);
  assert.is((await api.get('/api/functions/deploy/deployments')).body.deployments.length, 2);
  // a user without a function named "deploy" deploys as before
  const fresh = await tp.newUser();
  assert.is((await fresh.post('/api/functions/deploy', { name: 'other', ...declaration() })).status, 201);
  assert.is((await fresh.get('/api/functions/deploy')).body.error.code, 'function_not_found');
});

byName('invoke and delete by name', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'greeter', await makeNodeFunction('export default async (event) => ({ hello: event.who });\n'));
  assert.is(d.built.status, 'active', d.built.error ?? '');
  const res = await api.post('/api/functions/greeter/invoke', { who: 'by name' });
  assert.is(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.result, { hello: 'by name' });
  assert.is(res.body.version, 1);
  const pinned = await api.post('/api/functions/greeter/invoke?version=1', { who: 'pinned' });
  assert.equal(pinned.body.result, { hello: 'pinned' });
  assert.is((await api.get('/api/functions/greeter/instances')).status, 200);
  const other = await tp.newUser();
  assert.is((await other.post('/api/functions/greeter/invoke', {})).body.error.code, 'function_not_found');
  assert.is((await api.del('/api/functions/greeter')).status, 204);
  assert.is((await api.get(`/api/functions/${d.id}`)).status, 404);
  assert.is((await api.get('/api/functions/greeter')).status, 404);
});

byName.after(() => tp.close());
coverage.run();
byName.run();
