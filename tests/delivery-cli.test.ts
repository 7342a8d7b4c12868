// The progressive-delivery commands of the `containerpub` CLI as real child processes against a
// running platform (in-process runner, process driver), on SQLite and PostgreSQL: traffic (show,
// set, sticky, clear), promote, tag/tags, deploy --no-activate + approve, history's tags and
// approval marks, and the arguments refused before any request.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction } from './support/archives.ts';
import { deployAndBuild } from './support/flows.ts';
import { cliEnv, newHome, runCli, writeFunctionDir, type CliResult } from './support/cli.ts';
import type { Client } from './support/http.ts';

const t = await startTestPlatform({}, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-delivery-cli-'));
let dirCounter = 0;
const newDir = (label: string) => path.join(scratch, `${label}-${++dirCounter}`);

async function tokenUser() {
  const api = await tp.newUser();
  const env = cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url, CONTAINERPUB_TOKEN: api.token });
  const cli = (args: string[]) => runCli(args, env);
  return { api, env, cli };
}

const shown = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

function ok(r: CliResult): CliResult {
  assert.is(r.code, 0, shown(r));
  return r;
}

function oneLineError(r: CliResult, pattern: RegExp, code = 1) {
  assert.is(r.code, code, shown(r));
  const lines = r.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, `one line on stderr: ${shown(r)}`);
  assert.match(lines[0]!, pattern, shown(r));
}

const handler = (tag: string) => makeNodeFunction(`export default async (event, context) => ({ tag: ${JSON.stringify(tag)}, version: context.version });`);

/** A function with versions 1..n built in order (v_n live). */
async function builtVersions(api: Client, name: string, n: number): Promise<string> {
  let id = '';
  for (let v = 1; v <= n; v++) {
    const d = await deployAndBuild(api, name, await handler(`v${v}`));
    assert.is(d.built.status, 'active', d.built.error ?? '');
    id = d.id;
  }
  return id;
}

const servedBy = async (api: Client, id: string, query = '') => {
  const res = await api.post(`/api/functions/${id}/invoke${query}`, {});
  assert.is(res.status, 200, JSON.stringify(res.body));
  return res.body.version as number;
};

/** The history table's row for version v, as its cells (split on two or more spaces). */
async function historyRow(cli: (a: string[]) => Promise<CliResult>, name: string, v: number): Promise<string> {
  const r = ok(await cli(['history', name]));
  const line = r.stdout.split('\n').find((l) => new RegExp(`^[* ]\\s*v${v}\\s`).test(l));
  assert.ok(line, `v${v} in\n${r.stdout}`);
  return line!;
}

// ---------------------------------------------------------------------------------------------
const split = suite('cli: traffic and promote');

split('traffic shows the split; --to/--percent/--sticky sets a candidate; promote makes it live', async () => {
  const { api, cli } = await tokenUser();
  const id = await builtVersions(api, 'split', 2);
  const alone = ok(await cli(['traffic', 'split']));
  assert.match(alone.stdout, /VERSION\s+PERCENT\s+ROLE\n\s*v2\s+100%\s+live/);

  const set = ok(await cli(['traffic', 'split', '--to', '1', '--percent', '30', '--sticky']));
  assert.match(set.stdout, /✔ split: v2 70% \(live\), v1 30% \(candidate\), sticky/);
  const fn = (await api.get(`/api/functions/${id}`)).body;
  assert.equal(fn.traffic.map((s: any) => [s.version, s.percent, s.role]), [[2, 70, 'live'], [1, 30, 'candidate']]);
  assert.is(fn.sticky, true);

  const shownSplit = ok(await cli(['traffic', 'split']));
  assert.match(shownSplit.stdout, /v2\s+70%\s+live\n\s*v1\s+30%\s+candidate/);
  assert.match(shownSplit.stdout, /sticky: a traffic key keeps its version/);
  const json = JSON.parse(ok(await cli(['traffic', 'split', '--json'])).stdout);
  assert.equal(json, { name: 'split', traffic: fn.traffic, sticky: true });
  assert.match(await historyRow(cli, 'split', 1), /candidate 30%/);

  // neither --sticky nor --no-sticky keeps the setting; --no-sticky turns it off
  ok(await cli(['traffic', 'split', '--to', '1', '--percent', '50']));
  assert.is((await api.get(`/api/functions/${id}`)).body.sticky, true);
  const off = ok(await cli(['traffic', 'split', '--to', '1', '--percent', '0', '--no-sticky']));
  assert.match(off.stdout, /✔ split: v2 100% \(live\), v1 0% \(candidate\)\n/);

  const promoted = ok(await cli(['promote', 'split']));
  assert.match(promoted.stdout, /✔ split v1 is live \(was v2\)/);
  const after = (await api.get(`/api/functions/${id}`)).body;
  assert.is(after.activeVersion, 1);
  assert.equal(after.traffic.map((s: any) => [s.version, s.percent, s.role]), [[1, 100, 'live']]);
  assert.is(await servedBy(api, id), 1);
  assert.match(await historyRow(cli, 'split', 1), /^\*\s+v1\s+active\s+live/);
});

split('traffic --clear gives the live version everything; promote without a candidate is refused', async () => {
  const { api, cli } = await tokenUser();
  const id = await builtVersions(api, 'cleared', 2);
  ok(await cli(['traffic', 'cleared', '--to', '1', '--percent', '100']));
  assert.is(await servedBy(api, id), 1, '100 %: the candidate takes every request');
  const cleared = ok(await cli(['traffic', 'cleared', '--clear']));
  assert.match(cleared.stdout, /✔ cleared: candidate v1 removed; v2 100% \(live\)/);
  assert.is(await servedBy(api, id), 2);
  oneLineError(await cli(['promote', 'cleared']), /^error: .*candidate/i);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 2);
});

split('the API refuses: a version not built (naming its status), the live version as candidate', async () => {
  const { api, cli } = await tokenUser();
  const id = await builtVersions(api, 'refused', 1);
  const failed = await deployAndBuild(api, 'refused', Buffer.from('not an archive')); // v2 failed
  assert.is(failed.built.status, 'failed');
  oneLineError(await cli(['traffic', 'refused', '--to', '2', '--percent', '10']), /^error: .*failed/);
  oneLineError(await cli(['traffic', 'refused', '--to', '1', '--percent', '10']), /^error: .*live/);
  oneLineError(await cli(['traffic', 'refused', '--to', '9', '--percent', '10']), /^error: .*9/);
  oneLineError(await cli(['traffic', 'nosuch']), /^error: no function named "nosuch"/);
  assert.equal((await api.get(`/api/functions/${id}`)).body.traffic.length, 1);
});

split('bad arguments are refused before any request (exit 2, one line)', async () => {
  // no server at all: the checks are local
  const env = cliEnv(newHome(scratch), { CONTAINERPUB_URL: 'http://127.0.0.1:9', CONTAINERPUB_TOKEN: 'cp_unused' });
  const cli = (args: string[]) => runCli(args, env);
  oneLineError(await cli(['traffic', 'x', '--to', '2', '--percent', '101']), /--percent must be a whole number from 0 to 100, not "101"/, 2);
  oneLineError(await cli(['traffic', 'x', '--to', '2', '--percent', '2.5']), /--percent must be a whole number from 0 to 100, not "2.5"/, 2);
  oneLineError(await cli(['traffic', 'x', '--to', '2', '--percent=-1']), /--percent must be a whole number from 0 to 100/, 2);
  oneLineError(await cli(['traffic', 'x', '--to', '2']), /--to needs --percent/, 2);
  oneLineError(await cli(['traffic', 'x', '--percent', '10']), /--percent needs --to/, 2);
  oneLineError(await cli(['traffic', 'x', '--clear', '--to', '2']), /--clear takes no --to/, 2);
  oneLineError(await cli(['traffic', 'x', '--sticky']), /--sticky goes with --to and --percent/, 2);
  oneLineError(await cli(['traffic', 'x', '--to', '2', '--percent', '5', '--sticky', '--no-sticky']), /--sticky or --no-sticky, not both/, 2);
  oneLineError(await cli(['traffic', 'x', '--to', 'two', '--percent', '5']), /--to must be a positive integer/, 2);
  oneLineError(await cli(['tag', 'x', 'Beta', '2']), /invalid tag "Beta"/, 2);
  oneLineError(await cli(['tag', 'x', '1st', '2']), /invalid tag "1st"/, 2);
  oneLineError(await cli(['tag', 'x', 'a'.repeat(32), '2']), /invalid tag/, 2);
  oneLineError(await cli(['tag', 'x', 'v3', '2']), /invalid tag "v3": a tag cannot look like a version pin/, 2);
  oneLineError(await cli(['tag', 'x', 'beta']), /tag needs <version> \(or --delete\)/, 2);
  oneLineError(await cli(['tag', 'x', 'beta', '2', '--delete']), /tag --delete takes no version/, 2);
  oneLineError(await cli(['tag', 'x', 'beta', 'latest']), /"latest" is not a version/, 2);
  oneLineError(await cli(['approve', 'x']), /approve needs <version>/, 2);
  oneLineError(await cli(['approve', 'x', '0']), /"0" is not a version/, 2);
  oneLineError(await cli(['promote']), /promote needs <name>/, 2);
});

// ---------------------------------------------------------------------------------------------
const tagging = suite('cli: tags');

tagging('tag points a tag at a version and moves it; tags lists them; history shows them; --delete removes', async () => {
  const { api, cli } = await tokenUser();
  const id = await builtVersions(api, 'tagged', 3);
  assert.match(ok(await cli(['tags', 'tagged'])).stdout, /tagged has no tags/);
  assert.match(ok(await cli(['tag', 'tagged', 'beta', '1'])).stdout, /✔ tagged@beta → v1/);
  ok(await cli(['tag', 'tagged', 'stable', 'v2']));
  assert.is(await servedBy(api, id, '?tag=beta'), 1);
  assert.is(await servedBy(api, id), 3, 'the live version is unchanged');
  const viaTag = ok(await cli(['invoke', 'tagged', '--tag', 'beta']));
  assert.is(JSON.parse(viaTag.stdout).version, 1, 'invoke --tag runs the version the tag points at');
  assert.match(viaTag.stderr, /tagged v1 · /);
  oneLineError(await cli(['invoke', 'tagged', '--tag', 'beta', '--version', '2']), /give --version or --tag, not both/, 2);
  oneLineError(await cli(['invoke', 'tagged', '--tag', 'Beta']), /invalid tag "Beta"/, 2);
  oneLineError(await cli(['invoke', 'tagged', '--tag', 'nosuch']), /^error: .*nosuch/);

  const list = ok(await cli(['tags', 'tagged']));
  assert.match(list.stdout, /TAG\s+VERSION\s+UPDATED\nbeta\s+v1\s+\d+s ago\nstable\s+v2\s/);
  const json = JSON.parse(ok(await cli(['tags', 'tagged', '--json'])).stdout);
  assert.equal(json.tags.map((x: any) => [x.tag, x.version]), [['beta', 1], ['stable', 2]]);

  assert.match(ok(await cli(['tag', 'tagged', 'beta', '2'])).stdout, /✔ tagged@beta → v2/);
  assert.is(await servedBy(api, id, '?tag=beta'), 2, 'the move takes effect on the next request');
  assert.match(await historyRow(cli, 'tagged', 2), /\sbeta,stable\s/);
  assert.not.match(await historyRow(cli, 'tagged', 1), /beta/);

  assert.match(ok(await cli(['tag', 'tagged', 'beta', '--delete'])).stdout, /✔ tagged@beta deleted/);
  const left = JSON.parse(ok(await cli(['tags', 'tagged', '--json'])).stdout);
  assert.equal(left.tags.map((x: any) => x.tag), ['stable']);
  oneLineError(await cli(['tag', 'tagged', 'beta', '--delete']), /^error: .*beta/);
  oneLineError(await cli(['tag', 'tagged', 'gamma', '7']), /^error: .*7/);
});

// ---------------------------------------------------------------------------------------------
const approval = suite('cli: deploy --no-activate and approve');

approval('deploy --no-activate builds without going live; history says so; approve makes it live', async () => {
  const { api, cli } = await tokenUser();
  const dir = newDir('approve');
  writeFunctionDir(dir, 'first');
  ok(await cli(['deploy', dir, '--name', 'gated']));
  writeFunctionDir(dir, 'second');
  const held = ok(await cli(['deploy', dir, '--name', 'gated', '--no-activate']));
  assert.match(held.stdout, /✔ gated v2 built, awaiting approval \(v1 stays live\): "containerpub approve gated 2" makes it live/);
  const id = (await api.get('/api/functions')).body.functions.find((f: any) => f.name === 'gated').id;
  assert.is(await servedBy(api, id), 1);
  const v2 = (await api.get(`/api/functions/${id}/deployments/2`)).body;
  assert.is(v2.status, 'active');
  assert.is(v2.isActive, false);
  assert.is(v2.awaitingApproval, true);
  assert.match(await historyRow(cli, 'gated', 2), /^\s+v2\s+active\s+awaiting approval/);

  const approved = ok(await cli(['approve', 'gated', '2']));
  assert.match(approved.stdout, /✔ gated v2 approved and live \(was v1\)/);
  assert.is(await servedBy(api, id), 2);
  const after = (await api.get(`/api/functions/${id}/deployments/2`)).body;
  assert.is(after.awaitingApproval, false);
  assert.ok(after.approvedBy, 'the approver is recorded');
  assert.match(await historyRow(cli, 'gated', 2), /^\*\s+v2\s+active\s+live/);
});

approval('deploy --no-activate --json: the outcome says it awaits approval; the first version of a function waits too', async () => {
  const { api, cli } = await tokenUser();
  const dir = newDir('approve-json');
  writeFunctionDir(dir, 'only');
  const r = ok(await cli(['deploy', dir, '--name', 'gated-json', '--no-activate', '--json']));
  const outcome = JSON.parse(r.stdout);
  assert.is(outcome.status, 'active');
  assert.is(outcome.live, false);
  assert.is(outcome.awaitingApproval, true);
  assert.is(outcome.liveVersion, null);
  assert.match(r.stderr, /✔ gated-json v1 built, awaiting approval \(no version is live\)/);
  assert.is((await api.get(`/api/functions/${outcome.functionId}`)).body.activeVersion, null);
  ok(await cli(['approve', 'gated-json', '1']));
  assert.is(await servedBy(api, outcome.functionId), 1);
});

approval.after(() => tp.close());
split.run();
tagging.run();
approval.run();
