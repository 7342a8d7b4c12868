// Client-side flows the tests repeat: what a real client does over HTTP.
import { createHash } from 'node:crypto';
import * as assert from 'uvu/assert';
import type { Client } from './http.ts';
import { expectDocumented } from './documented.ts';
import type { Platform } from '../../shared/platform.ts';
import { activateDeployment } from '../../shared/domain/activation.ts';
import { nowIso } from '../../shared/db/time.ts';

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * The size and sha256 a JSON deploy must declare (its upload URL is bound to them). Without an
 * archive: a placeholder's, for tests that never upload.
 */
export const declaration = (archive: Buffer = Buffer.from('placeholder')) => ({
  sizeBytes: archive.length,
  sha256: sha256(archive),
});

/** POST /deploy (JSON) → PUT to the presigned URL with fetch → POST /complete. */
export async function deployPresigned(api: Client, name: string, archive: Buffer) {
  const deploy = await api.post('/api/functions/deploy', { name, ...declaration(archive) });
  assert.is(deploy.status, 201, JSON.stringify(deploy.body));
  const putArchive = () => fetch(deploy.body.upload.url, { method: deploy.body.upload.method, headers: deploy.body.upload.headers, body: archive });
  let put = await putArchive();
  // A 503 asks the client to try again, and the CLI does (scripts/cli/upload.ts): so does this
  // client, once. A PUT through the API's upload relay to the embedded S3 has answered 503 now and
  // then under CI's load, cause not found yet; the warning shows in the suite's output. An upload
  // that keeps failing still fails the test.
  if (put.status === 503) {
    console.warn(`deployPresigned: the PUT answered 503 (${await put.text()}); trying once more`);
    put = await putArchive();
  }
  assert.is(put.status, 200, `presigned PUT answered ${put.status}`);
  // the API's own upload URL (S3 embedded) is a documented route; a real S3's answer is S3's
  const target = new URL(deploy.body.upload.url);
  if (target.pathname.startsWith('/api/uploads/')) {
    expectDocumented({ status: put.status, body: await put.json(), headers: put.headers }, 'PUT', target.pathname + target.search);
  }
  const complete = await api.post(`/api/functions/${deploy.body.id}/deployments/${deploy.body.version}/complete`);
  assert.is(complete.status, 202, JSON.stringify(complete.body));
  return { ...deploy.body, completeStatus: complete.body.status as string };
}

/**
 * Stands in for a runner that finished building `version` (used by the core API tests, which run
 * without a runner): marks it built, then applies the real activation rule.
 */
export async function simulateBuilt(p: Platform, functionId: string, version: number) {
  const now = nowIso();
  const dep = await p.db.knex('function_deployments').where({ function_id: functionId, version }).first();
  await p.db.knex('function_deployments').where({ id: dep.id }).update({
    status: 'active',
    image_tag: `function-${functionId}-v${version}:latest`,
    deployed_at: now,
    updated_at: now,
  });
  return activateDeployment(p.db, { functionId, deploymentId: dep.id, reason: { kind: 'build' } });
}

/** Polls the deployment until its build is over (built or failed). */
export async function waitForBuild(api: Client, functionId: string, version: number, timeoutMs = 60_000) {
  const { waitFor } = await import('./services.ts');
  return waitFor(
    `version ${version} to finish building`,
    async () => {
      const res = await api.get(`/api/functions/${functionId}/deployments/${version}`);
      return res.body.status === 'active' || res.body.status === 'failed' ? res.body : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

/** Deploy through the presigned path and wait for the build; returns the deployment as built. */
export async function deployAndBuild(api: Client, name: string, archive: Buffer, timeoutMs?: number) {
  const d = await deployPresigned(api, name, archive);
  const built = await waitForBuild(api, d.id, d.version, timeoutMs);
  return { ...d, built };
}

/** The record of one invocation, once written (records are written in batches, within ~1 s). */
export async function waitForInvocation(api: Client, functionId: string, requestId: string) {
  const { waitFor } = await import('./services.ts');
  return waitFor(
    `the record of invocation ${requestId}`,
    async () => {
      const res = await api.get(`/api/functions/${functionId}/invocations?limit=200`);
      return (res.body.invocations as any[]).find((i) => i.requestId === requestId);
    },
    { timeoutMs: 5_000, intervalMs: 50 },
  );
}
