// The dashboard in a real browser (Debian's chromium, driven by playwright-core) against a real
// platform: API, runner, process driver, SQLite or PostgreSQL, S3 over HTTP. The journeys a user
// makes: sign in, deploy by upload and watch the build go live, invoke, roll back with one click
// and see the live version change, send 10 % to a candidate and see traffic and charts, sign out.
// Also: a failed build's log is readable, another user's function is out of reach, and the pages
// work at phone width with labelled controls and a keyboard.
//
// SCREENSHOTS_DIR=docs/screenshots writes the screenshots the README shows.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Browser, Page } from 'playwright-core';
import { CanaryController } from '../runner/canary-controller.ts';
import { runCleanup } from '../shared/domain/retention.ts';
import { makeNodeFunction, makeTarGz } from './support/archives.ts';
import { launchBrowser, openPage, overflowsSideways, unlabelledControls, type WatchedPage } from './support/browser.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { waitFor } from './support/services.ts';

const t = await startTestPlatform({ METRICS_FLUSH_MS: '100', CANARY_TICK_MS: '100', FUNCTION_MAX_INSTANCES: '2' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;
const launched = await launchBrowser();
if (!launched) {
  await tp.close();
  process.exit(0);
}
const browser = launched as Browser;

const PASSWORD = 'correct horse battery';
const screenshots = process.env.SCREENSHOTS_DIR ? path.resolve(process.env.SCREENSHOTS_DIR) : null;
async function shot(page: Page, name: string) {
  if (!screenshots) return;
  fs.mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: false });
}

/** A user made through the API (registration is the CLI's job), with a bearer client for checks. */
async function newAccount() {
  const api = await tp.newUser();
  const me = await api.get('/api/auth/me');
  return { api, email: me.body.email as string };
}

async function signIn(w: WatchedPage, email: string) {
  await w.page.goto('/');
  await w.page.getByLabel('Email').fill(email);
  await w.page.getByLabel('Password').fill(PASSWORD);
  await w.page.getByRole('button', { name: 'Sign in' }).click();
  await w.page.getByRole('heading', { name: 'Functions' }).waitFor();
}

const archive = (version: number, extra = '') =>
  makeNodeFunction(`export default async (event) => { console.log('v${version} got', JSON.stringify(event)); ${extra} return { version: ${version}, event }; };`);

/** Uploads an archive through the page's file input (what a drop does too). */
async function upload(page: Page, name: string, buffer: Buffer) {
  await page.getByLabel('Function archive (.tar.gz)').setInputFiles({ name, mimeType: 'application/gzip', buffer });
}

const liveVersion = (page: Page) => page.getByTestId('live-version');
async function waitForText(page: Page, what: string, read: () => Promise<string | null>, expected: string | RegExp) {
  await waitFor(what, async () => {
    const text = (await read()) ?? '';
    return typeof expected === 'string' ? text.includes(expected) : expected.test(text);
  }, { timeoutMs: 60_000, intervalMs: 100 });
}

const journey = suite('a user, in the browser');

journey('sign in → deploy by upload → build goes live → invoke → roll back → candidate at 10 % → traffic and charts → sign out', async () => {
  const { api, email } = await newAccount();
  const w = await openPage(browser, tp.url);
  const { page } = w;
  try {
    await page.goto('/');
    await shot(page, 'sign-in');
    await signIn(w, email);
    await page.getByText('No functions yet').waitFor();

    // deploy a new function by upload, and follow its build until it is live
    await page.getByLabel('Function name').fill('hello');
    await upload(page, 'hello.tar.gz', await archive(1));
    await page.locator('.build .badge.live').waitFor({ timeout: 60_000 });
    const fn = (await api.get('/api/functions/hello')).body;
    assert.is(fn.activeVersion, 1, 'the API says v1 is live');
    // the list shows it
    await page.getByRole('link', { name: 'hello', exact: true }).click();
    await page.getByRole('heading', { name: 'hello' }).waitFor();
    await waitForText(page, 'v1 live in the header', () => liveVersion(page).textContent(), 'v1');

    // invoke from the Live tab: the answer, and the invocation arriving on the stream with what it printed
    await page.getByRole('link', { name: 'Live', exact: true }).click();
    await page.getByLabel('Event (JSON)').fill('{"n": 41}');
    await page.locator('form button[type=submit]', { hasText: 'Invoke' }).click();
    await page.getByLabel('Result').getByText('"n": 41').waitFor();
    await page.locator('.feed-item.invocation').filter({ hasText: 'v1 got {"n":41}' }).waitFor();
    // a body that is not JSON: the API's error, in words
    await page.getByLabel('Event (JSON)').fill('{not json');
    await page.locator('form button[type=submit]', { hasText: 'Invoke' }).click();
    await page.getByRole('alert').filter({ hasText: 'invalid_json' }).waitFor();

    // a second version from the function page goes live
    await page.getByRole('link', { name: 'History', exact: true }).click();
    await upload(page, 'hello-v2.tar.gz', await archive(2));
    await waitForText(page, 'v2 live in the header', () => liveVersion(page).textContent(), 'v2');
    await page.locator('li.version[data-version="2"] .badge.live').waitFor();
    await shot(page, 'history');

    // one-click rollback, confirmed in a dialog that names both versions
    await page.locator('li.version[data-version="1"]').getByRole('button', { name: 'Roll back to v1' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('heading', { name: 'Roll back to v1? (now live: v2)' }).waitFor();
    await shot(page, 'rollback-confirmation');
    await dialog.getByRole('button', { name: 'Roll back to v1' }).click();
    await waitForText(page, 'v1 live again in the header', () => liveVersion(page).textContent(), 'v1');
    await page.locator('li.version[data-version="1"] .badge.live').waitFor();
    assert.is((await api.get('/api/functions/hello')).body.activeVersion, 1, 'the API agrees: v1 is live');
    assert.is(await dialog.isVisible(), false, 'the dialog closed');

    // 10 % to v2 as a candidate, with the slider moved by keyboard
    await page.getByRole('link', { name: 'Traffic', exact: true }).click();
    const slider = page.getByLabel(/Candidate share/);
    await slider.focus();
    await page.keyboard.press('Home');
    for (let i = 0; i < 10; i++) await page.keyboard.press('ArrowRight');
    await page.locator('output[for=share]', { hasText: '10 %' }).waitFor();
    await page.getByRole('button', { name: 'Set candidate traffic' }).click();
    await waitForText(page, 'candidate v2 at 10 % in the header', () => page.getByTestId('candidate').textContent(), 'v2 (10 %)');
    const traffic = (await api.get('/api/functions/hello')).body.traffic;
    assert.equal(
      traffic.map((s: any) => [s.version, s.percent, s.role]),
      [[1, 90, 'live'], [2, 10, 'candidate']],
      'the API has the split the slider set',
    );
    await page.locator('.split .share.candidate', { hasText: 'v2 · 10 %' }).waitFor();
    await shot(page, 'traffic');

    // traffic to both versions, then the charts show them side by side
    for (let i = 0; i < 20; i++) assert.is((await api.post('/api/functions/hello/invoke', { i })).status, 200);
    for (let i = 0; i < 5; i++) assert.is((await api.post('/api/functions/hello/invoke?version=2', { i })).status, 200);
    // 26 invocations in all: the one from the page, 20 split 90/10, 5 pinned to v2 (the bad JSON ran nothing)
    await waitFor('metrics of all 26 invocations flushed', async () => {
      const m = (await api.get('/api/functions/hello/metrics?minutes=60')).body;
      const byVersion = new Map<number, number>(m.versions.map((v: any) => [v.version, v.totals.requests]));
      return (byVersion.get(1) ?? 0) + (byVersion.get(2) ?? 0) === 26 && (byVersion.get(2) ?? 0) >= 5;
    }, { timeoutMs: 30_000 });
    await page.getByRole('link', { name: 'Metrics', exact: true }).click();
    const totals = page.locator('table.figures');
    await totals.getByRole('rowheader', { name: 'v1 (live)' }).waitFor();
    await totals.getByRole('rowheader', { name: 'v2 (candidate)' }).waitFor();
    await waitFor('three charts drawn', async () => (await page.locator('figure.chart canvas').count()) >= 3);
    await shot(page, 'metrics');

    // the functions list: live version, candidate, requests in the last hour
    await page.getByRole('link', { name: 'Functions', exact: true }).click();
    const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: 'hello', exact: true }) });
    await row.getByText('v2 10 %').waitFor();
    const cells = await row.locator('td.num').allTextContents();
    assert.is(cells[0], '26', 'requests in the last hour');
    assert.match(cells[1]!, /^0/, 'errors in the last hour');
    await shot(page, 'functions');

    // sign out: back to the sign-in form, and the old cookie is worth nothing
    const [cookie] = (await w.context.cookies()).filter((c) => c.name === 'cp_session');
    assert.ok(cookie, 'a session cookie was set');
    assert.is(cookie.httpOnly, true, 'the session cookie is httpOnly');
    assert.is(cookie.sameSite, 'Strict');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    const after = await fetch(`${tp.url}/api/functions`, { headers: { cookie: `cp_session=${cookie.value}` } });
    assert.is(after.status, 401, 'the signed-out session is revoked');
    w.expectClean('the journey');
  } finally {
    await w.close();
  }
});

journey('an account made from the sign-in page is signed in at once', async () => {
  const w = await openPage(browser, tp.url);
  const { page } = w;
  try {
    await page.goto('/');
    await page.getByRole('button', { name: 'Create one' }).click();
    const email = `made-in-page-${process.pid}-${Date.now()}@example.com`;
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('heading', { name: 'Functions' }).waitFor();
    await page.getByText(email).waitFor();
    // the same email again: the API's refusal, in words
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Create one' }).click();
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('alert').filter({ hasText: 'an account with this email already exists' }).waitFor();
    w.expectClean('the new account');
  } finally {
    await w.close();
  }
});

journey("a failed build's log is readable, and the live version stays", async () => {
  const { api, email } = await newAccount();
  const w = await openPage(browser, tp.url);
  const { page } = w;
  try {
    await signIn(w, email);
    await page.getByLabel('Function name').fill('sturdy');
    await upload(page, 'sturdy.tar.gz', await archive(1));
    await page.locator('.build .badge.live').waitFor({ timeout: 60_000 });
    await page.goto('/#/f/sturdy/history');
    await upload(page, 'broken.tar.gz', await makeTarGz([{ name: 'README.md', content: 'no code here' }]));
    const failed = page.locator('li.version[data-version="2"]');
    await failed.locator('.badge.status-failed').waitFor({ timeout: 60_000 });
    await failed.getByLabel('Build log of v2').getByText(/no handler/).waitFor();
    await failed.getByText('v2 failed to build: there is nothing to roll back to.').waitFor();
    assert.is(await failed.getByRole('button', { name: 'Make v2 live' }).isDisabled(), true, 'a failed version cannot be made live');
    assert.match((await liveVersion(page).textContent()) ?? '', /v1/, 'v1 is still live');
    await shot(page, 'failed-build');
    w.expectClean('the failed build');
  } finally {
    await w.close();
  }
});

journey("another user's function is out of reach from the dashboard", async () => {
  const owner = await newAccount();
  const form = new FormData();
  form.set('name', 'secret-fn');
  form.set('archive', new Blob([await archive(1)]), 'a.tar.gz');
  const res = await fetch(`${tp.url}/api/functions/deploy`, { method: 'POST', body: form, headers: { authorization: `Bearer ${owner.api.token}` } });
  assert.is(res.status, 201, await res.clone().text());
  const other = await newAccount();
  const w = await openPage(browser, tp.url);
  const { page } = w;
  try {
    await signIn(w, other.email);
    await page.getByText('No functions yet').waitFor();
    assert.is(await page.getByText('secret-fn').count(), 0, "the other user's function is not listed");
    await page.goto('/#/f/secret-fn/history');
    await page.getByRole('alert').filter({ hasText: 'function_not_found' }).waitFor();
    // and the API refuses the session cookie for it, reading or changing
    const status = await page.evaluate(async () => (await fetch('/api/functions/secret-fn/deployments')).status);
    assert.is(status, 404);
    w.expectClean('the other user');
  } finally {
    await w.close();
  }
});

journey('retention: a deleted version says why it cannot come back; an archived one is rebuilt and rolled back to', async () => {
  const { api, email } = await newAccount();
  for (let v = 1; v <= 4; v++) {
    const form = new FormData();
    form.set('name', 'aged');
    form.set('archive', new Blob([await archive(v)]), 'a.tar.gz');
    const res = await fetch(`${tp.url}/api/functions/deploy`, { method: 'POST', body: form, headers: { authorization: `Bearer ${api.token}` } });
    assert.is(res.status, 201, await res.clone().text());
    await waitFor(`aged v${v} live`, async () => (await api.get('/api/functions/aged')).body.activeVersion === v, { timeoutMs: 60_000 });
  }
  // the real cleanup: v1 beyond the last 3 is deleted, then v2 beyond the last 2 is archived
  await runCleanup(tp.platform, tp.driver, { functionName: 'aged', keepLastN: 3, archiveMode: 'delete' });
  await runCleanup(tp.platform, tp.driver, { functionName: 'aged', keepLastN: 2, archiveMode: 'prefix' });
  const states = (await api.get('/api/functions/aged/deployments')).body.deployments.map((d: any) => [d.version, d.status]);
  assert.equal(states, [[4, 'active'], [3, 'active'], [2, 'archived'], [1, 'deleted']]);

  const w = await openPage(browser, tp.url);
  const { page } = w;
  try {
    await signIn(w, email);
    await page.goto('/#/f/aged/history');
    const deleted = page.locator('li.version[data-version="1"]');
    await deleted.getByText(/v1 was deleted by retention cleanup: its image and its archive are gone/).waitFor();
    assert.is(await deleted.getByRole('button').isDisabled(), true, 'no rollback to a deleted version');
    await page.locator('li.version[data-version="2"]').getByRole('button', { name: 'Rebuild and roll back to v2' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText(/rebuilt from its archive and then replace v4, which keeps serving until then/).waitFor();
    await dialog.getByRole('button', { name: 'Rebuild and roll back to v2' }).click();
    await page.getByRole('status').filter({ hasText: /Restoring version 2 from its archive/ }).waitFor();
    await waitForText(page, 'v2 live once rebuilt', () => liveVersion(page).textContent(), 'v2');
    assert.is((await api.get('/api/functions/aged')).body.activeVersion, 2);
    w.expectClean('retention');
  } finally {
    await w.close();
  }
});

journey('compare, a canary rolled back by its figures, configuration without secret values, live filters; few requests per page', async () => {
  const { api, email } = await newAccount();
  const deploy = async (buffer: Buffer) => {
    const form = new FormData();
    form.set('name', 'tabs');
    form.set('archive', new Blob([buffer]), 'a.tar.gz');
    const res = await fetch(`${tp.url}/api/functions/deploy`, { method: 'POST', body: form, headers: { authorization: `Bearer ${api.token}` } });
    assert.is(res.status, 201, await res.clone().text());
    const version = ((await res.json()) as any).version as number;
    await waitFor(`tabs v${version} built`, async () => (await api.get(`/api/functions/tabs/deployments/${version}`)).body.status === 'active', { timeoutMs: 60_000 });
  };
  await deploy(await archive(1));
  // v2 fails every call: the canary's candidate
  await deploy(await makeNodeFunction(`export default async () => { throw new Error('v2 is broken'); };`));
  await waitFor('v2 live', async () => (await api.get('/api/functions/tabs')).body.activeVersion === 2, { timeoutMs: 30_000 });
  assert.is((await api.post('/api/functions/tabs/rollback', { version: 1 })).status, 200);

  const w = await openPage(browser, tp.url);
  const { page } = w;
  const apiRequests: string[] = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/api/')) apiRequests.push(`${r.method()} ${u.pathname}`);
  });
  const controller = new CanaryController(tp.platform, 'dashboard-test');
  controller.start();
  try {
    await signIn(w, email);

    // a page loads with a handful of requests: its function, its tab's reads and the event stream
    for (const [tab, ready] of [['history', 'li.version[data-version="2"]'], ['traffic', '#tags-h'], ['metrics', 'select'], ['live', '.feed-item'], ['config', '#keys-h']] as const) {
      await page.goto(`/#/f/tabs/${tab}`);
      await page.locator(ready).first().waitFor();
      // a fresh load of that address, as a bookmark or a shared link opens it
      apiRequests.length = 0;
      await page.reload();
      await page.locator(ready).first().waitFor();
      assert.ok(apiRequests.length <= 6, `${tab}: ${apiRequests.length} API requests: ${apiRequests.join(', ')}`);
    }

    // compare v1 and v2: the code changed
    await page.goto('/#/f/tabs/history');
    await page.getByText('Compare two versions').click();
    await page.getByLabel('From', { exact: true }).selectOption('1');
    await page.getByLabel('To', { exact: true }).selectOption('2');
    await page.getByRole('button', { name: 'Compare', exact: true }).click();
    await page.locator('.comparison').getByText('changed').waitFor();

    // a canary of the broken v2 from the Traffic tab, rolled back by its own figures
    await page.getByRole('link', { name: 'Traffic', exact: true }).click();
    const form = page.locator('form.canary-form');
    await form.getByLabel('Version').selectOption('2');
    await form.getByLabel('Steps (%)').fill('50, 100');
    await form.getByLabel('Seconds per step').fill('1');
    await form.getByLabel('Min requests per step').fill('4');
    await form.getByRole('button', { name: 'Start canary' }).click();
    await page.getByText('Canary of v2 started at 50 %.').waitFor();
    await waitForText(page, 'the canary running in the header', () => page.getByTestId('candidate').textContent(), 'v2 (50 %)');
    await waitFor('the canary rolled back', async () => {
      await api.post('/api/functions/tabs/invoke', {});
      return (await api.get('/api/functions/tabs/canary')).body.status === 'rolled_back';
    }, { timeoutMs: 30_000, intervalMs: 20 });
    await page.locator('.badge.canary-rolled_back').waitFor();
    const why = page.locator('table.figures', { hasText: 'The figures that rolled it back' });
    await why.waitFor();
    const cells = await why.locator('tbody td').allTextContents();
    assert.ok(Number(cells[0]) >= 1 && Number(cells[1]) >= 1, `requests and errors shown: ${cells.join(' | ')}`);
    await page.locator('.banner.error', { hasText: /at 50 % \(step 1 of 2\): error rate .* is over maxErrorRate/ }).waitFor();
    assert.is(await page.getByTestId('candidate').count(), 0, 'no candidate once rolled back');
    await shot(page, 'canary-rolled-back');

    // a tag on v1, listed, reachable by name, then removed
    const tags = page.getByRole('region', { name: 'Tags', exact: true });
    await tags.getByLabel('Tag', { exact: true }).fill('stable');
    await tags.getByLabel('Version').selectOption('1');
    await tags.getByRole('button', { name: 'Set tag' }).click();
    await tags.getByRole('rowheader', { name: 'stable' }).waitFor();
    assert.equal((await api.get('/api/functions/tabs/tags')).body.tags.map((x: any) => [x.tag, x.version]), [['stable', 1]]);
    await tags.getByRole('button', { name: 'Remove tag stable' }).click();
    await page.getByText('Tag stable removed.').waitFor();
    assert.equal((await api.get('/api/functions/tabs/tags')).body.tags, []);

    // configuration: a variable, a secret whose value never comes back, access and a key shown once
    await page.getByRole('link', { name: 'Configuration', exact: true }).click();
    await page.getByLabel('Name', { exact: true }).fill('GREETING');
    await page.getByLabel('Value', { exact: true }).fill('hello there');
    await page.getByRole('button', { name: 'Set variable' }).click();
    await page.getByText(/GREETING set: version v3 made/).waitFor();
    await page.locator('table', { hasText: 'GREETING' }).getByText('hello there').waitFor();
    await page.getByLabel('Secret name').fill('API_TOKEN');
    await page.getByLabel('Secret value').fill('s3cr3t-value-never-shown');
    await page.getByRole('button', { name: 'Set secret' }).click();
    await page.getByText(/secret API_TOKEN set: version v4 made/).waitFor();
    await page.locator('ul.names').getByText('API_TOKEN').waitFor();
    assert.is(await page.getByLabel('Secret value').inputValue(), '', 'the value left the form');
    assert.not.ok((await page.content()).includes('s3cr3t-value-never-shown'), 'the secret value is nowhere on the page');
    await page.getByLabel('Who may call its URL').selectOption('key');
    await page.getByRole('button', { name: 'Save access' }).click();
    await page.getByText('Access is now key.').waitFor();
    await page.getByLabel('Key name').fill('ci');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = await page.getByLabel('The new key').inputValue();
    assert.match(key, /^fk_/);
    const fn = (await api.get('/api/functions/tabs')).body;
    assert.is(fn.access, 'key');
    await waitFor('v4 live', async () => (await api.get('/api/functions/tabs')).body.activeVersion === 4, { timeoutMs: 30_000 });
    const called = await fetch(fn.url, { headers: { 'x-function-key': key } });
    assert.is(called.status, 200, 'the key the page showed opens the function');
    await shot(page, 'configuration');

    // live: filter to the errors of v2
    await page.getByRole('link', { name: 'Live', exact: true }).click();
    await page.locator('.feed-item.invocation').first().waitFor();
    await page.getByLabel('Outcome').selectOption('error');
    await page.getByLabel('Version').selectOption('2');
    await waitFor('only v2 errors listed', async () => {
      const heads = await page.locator('.feed-item').allTextContents();
      return heads.length > 0 && heads.every((h) => h.includes('v2') && h.includes('error'));
    });
    await page.locator('.feed-item.invocation').first().locator('.error-text', { hasText: 'v2 is broken' }).waitFor();
    await shot(page, 'live');
    w.expectClean('the tabs');
  } finally {
    await controller.stop();
    await w.close();
  }
});

journey('at phone width: no sideways scrolling, labelled controls, sign-in by keyboard', async () => {
  const { api, email } = await newAccount();
  const form = new FormData();
  form.set('name', 'pocket');
  form.set('archive', new Blob([await archive(1)]), 'a.tar.gz');
  const res = await fetch(`${tp.url}/api/functions/deploy`, { method: 'POST', body: form, headers: { authorization: `Bearer ${api.token}` } });
  assert.is(res.status, 201, await res.clone().text());
  await waitFor('pocket live', async () => (await api.get('/api/functions/pocket')).body.activeVersion === 1, { timeoutMs: 60_000 });
  const w = await openPage(browser, tp.url, { viewport: { width: 390, height: 844 } });
  const { page } = w;
  try {
    await page.goto('/');
    assert.equal(await unlabelledControls(page), [], 'sign-in controls are labelled');
    // a wrong password: the API's words, and still signed out
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'wrong email or password' }).waitFor();
    await page.getByLabel('Email').fill('');
    await page.getByLabel('Password').fill('');
    // keyboard only: the email field, Tab to the password, Enter submits
    await page.getByLabel('Email').focus();
    await page.keyboard.type(email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Functions' }).waitFor();
    await page.getByRole('link', { name: 'pocket', exact: true }).waitFor();
    assert.is(await overflowsSideways(page), false, 'the functions list fits a phone');
    assert.equal(await unlabelledControls(page), [], 'the functions page controls are labelled');
    await shot(page, 'phone-functions');
    // each tab, once its own reads have landed (something only its data shows)
    const loaded: Record<string, string> = {
      history: 'li.version[data-version="1"]',
      traffic: '.candidate-form, #tags-h',
      metrics: '.empty, table.figures',
      live: '.feed-item',
      config: '#keys-h',
    };
    for (const [tab, selector] of Object.entries(loaded)) {
      await page.goto(`/#/f/pocket/${tab}`);
      await page.getByRole('heading', { name: 'pocket' }).waitFor();
      await page.locator(selector).first().waitFor();
      assert.is(await overflowsSideways(page), false, `the ${tab} tab fits a phone`);
      assert.equal(await unlabelledControls(page), [], `the ${tab} tab's controls are labelled`);
    }
    await page.goto('/#/f/pocket/history');
    await page.locator('li.version[data-version="1"]').waitFor();
    await shot(page, 'phone-history');
    w.expectClean('the phone pages');
  } finally {
    await w.close();
  }
});

journey.after(async () => {
  await browser.close();
  await tp.close();
});

journey.run();
