// Getting the platform into the state a scenario measures: functions deployed through the real
// HTTP flow, or rows written straight into the database when the state is large (history, cleanup)
// and how it got there is not what is measured.
import { createHash, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { nowIso } from '../../shared/db/time.ts';
import { activateDeployment } from '../../shared/domain/activation.ts';
import { archiveKey } from '../../shared/domain/model.ts';
import type { Platform } from '../../shared/platform.ts';
import { makeNodeFunction } from '../../tests/support/archives.ts';
import type { BenchServer, BenchUser } from './harness.ts';
import { sleep } from './stats.ts';

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The small function every scenario deploys (a few hundred bytes gzipped). */
export function smallFunction(): Promise<Buffer> {
  return makeNodeFunction('export default async (event) => ({ hello: event?.name ?? "world" });\n');
}

export const INVOKE_EVENT = { name: 'bench' };

/** One API request as `user`; the body parsed when it is JSON. */
export async function call(server: BenchServer, user: BenchUser, method: string, path: string, body?: unknown) {
  const res = await fetch(server.url + path, {
    method,
    headers: user.headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: reported as is
  }
  return { status: res.status, body: parsed };
}

export interface Deployed {
  functionId: string;
  version: number;
  deploymentId: string;
}

/** POST /deploy (declaring size and sha256) → PUT to the presigned URL: what a client does first. */
export async function requestAndUpload(server: BenchServer, user: BenchUser, name: string, archive: Buffer): Promise<Deployed> {
  const deploy = await call(server, user, 'POST', '/api/functions/deploy', { name, sizeBytes: archive.length, sha256: sha256(archive) });
  if (deploy.status !== 201) throw new Error(`deploy answered ${deploy.status}: ${JSON.stringify(deploy.body)}`);
  const put = await fetch(deploy.body.upload.url, { method: 'PUT', headers: deploy.body.upload.headers, body: archive });
  await put.arrayBuffer();
  if (put.status !== 200) throw new Error(`presigned PUT answered ${put.status}`);
  return { functionId: deploy.body.id, version: deploy.body.version, deploymentId: deploy.body.deploymentId };
}

export async function complete(server: BenchServer, user: BenchUser, d: Deployed): Promise<void> {
  const res = await call(server, user, 'POST', `/api/functions/${d.functionId}/deployments/${d.version}/complete`);
  if (res.status !== 202) throw new Error(`complete answered ${res.status}: ${JSON.stringify(res.body)}`);
}

/** Polls the deployment over HTTP until it is built (or fails: an error). */
export async function waitUntilActive(
  server: BenchServer,
  user: BenchUser,
  d: Deployed,
  opts: { intervalMs?: number; timeoutMs?: number } = {},
): Promise<{ imageTag: string | null; buildLogs: string }> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  for (;;) {
    const res = await call(server, user, 'GET', `/api/functions/${d.functionId}/deployments/${d.version}`);
    if (res.status !== 200) throw new Error(`deployment answered ${res.status}: ${JSON.stringify(res.body)}`);
    if (res.body.status === 'active') return { imageTag: res.body.imageTag, buildLogs: res.body.buildLogs ?? '' };
    if (res.body.status === 'failed') {
      throw new Error(`version ${d.version} failed to build: ${res.body.error}\n${res.body.buildLogs ?? ''}`);
    }
    if (Date.now() > deadline) throw new Error(`version ${d.version} still ${res.body.status} after ${opts.timeoutMs ?? 120_000} ms`);
    await sleep(opts.intervalMs ?? 15);
  }
}

/** The whole client flow, up to a live version. */
export async function deployAndWait(server: BenchServer, user: BenchUser, name: string, archive: Buffer) {
  const d = await requestAndUpload(server, user, name, archive);
  await complete(server, user, d);
  const built = await waitUntilActive(server, user, d);
  return { ...d, ...built };
}

/**
 * Deletes a function through the API: its instances are stopped and its artifacts (images,
 * unpacked directories) removed, as a user's DELETE does. What a scenario that ran functions leaves.
 */
export async function deleteFunction(server: BenchServer, user: BenchUser, functionId: string): Promise<void> {
  const res = await call(server, user, 'DELETE', `/api/functions/${functionId}`);
  if (res.status !== 204) throw new Error(`DELETE answered ${res.status}: ${JSON.stringify(res.body)}`);
}

/**
 * Marks an allocated version built and applies the real activation rule: what a runner's
 * finishBuild records, without building anything.
 */
export async function markBuilt(p: Platform, functionId: string, version: number): Promise<string> {
  const now = nowIso();
  const dep = await p.db.knex('function_deployments').where({ function_id: functionId, version }).first('id');
  await p.db.knex('function_deployments').where({ id: dep.id }).update({
    status: 'active',
    deployed_at: now,
    updated_at: now,
  });
  await activateDeployment(p.db, { functionId, deploymentId: dep.id, reason: { kind: 'build' } });
  return dep.id as string;
}

export async function insertInBatches(knex: Knex, table: string, rows: Record<string, unknown>[], batch = 500): Promise<void> {
  for (let i = 0; i < rows.length; i += batch) {
    await knex(table).insert(rows.slice(i, i + batch));
  }
}

const BUILD_LOG = [
  '[containerpub] build of version N (attempt 1) on bench-runner',
  '[containerpub] validating and unpacking the archive',
  '[containerpub] archive ok: 2 entries, 120 bytes unpacked',
  '[containerpub] Node.js function, handler index.mjs',
  'process driver: version ready (no image; runs as a child process)',
  '[containerpub] built in 0.1 s',
].join('\n');

/** A function row and `versions` built versions of it (the newest live), as runners leave them. */
export function builtFunctionRows(userId: string, name: string, versions: number, at = Date.now()) {
  const functionId = randomUUID();
  const ids = Array.from({ length: versions }, () => randomUUID());
  const iso = (ms: number) => new Date(ms).toISOString();
  // versions spread over the past, a minute apart, the newest just now
  const t = (v: number) => at - (versions - v) * 60_000;
  const fn = {
    id: functionId,
    user_id: userId,
    name,
    status: 'active',
    active_deployment_id: ids[versions - 1],
    last_version: versions,
    intent_seq: versions,
    active_intent_seq: versions,
    created_at: iso(t(1)),
    updated_at: iso(t(versions)),
  };
  const deployments = ids.map((id, i) => {
    const version = i + 1;
    return {
      id,
      function_id: functionId,
      version,
      image_tag: null,
      s3_key: archiveKey(functionId, version),
      status: 'active',
      is_active: version === versions,
      build_logs: BUILD_LOG,
      error: null,
      declared_size: 312,
      declared_sha256: 'a'.repeat(64),
      archive_size: 312,
      archive_sha256: 'a'.repeat(64),
      intent_seq: version,
      claimed_by: null,
      lease_expires_at: null,
      attempts: 1,
      upload_expires_at: iso(t(version) + 900_000),
      queued_at: iso(t(version) + 200),
      deployed_at: iso(t(version) + 400),
      activated_at: iso(t(version) + 400),
      created_at: iso(t(version)),
      updated_at: iso(t(version) + 400),
    };
  });
  return { functionId, fn, deployments };
}
