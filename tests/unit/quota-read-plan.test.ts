// The quota read runs on every deploy and complete under the account's lock: on SQLite (never
// ANALYZEd, so planned without statistics) it must go from the account's functions to their
// versions through the partial indexes, never through the runners' status index, which holds
// every account's builds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openDatabase } from '../../shared/db/knex.ts';
import { accountQuotaRead } from '../../shared/domain/quotas.ts';

test('SQLite plans the quota read from the account, through the partial indexes', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-quota-plan-'));
  const db = await openDatabase({ client: 'sqlite', filename: path.join(dir, 'db.sqlite') });
  try {
    const read = accountQuotaRead({ maxFunctions: 10, maxBuilds: 10, maxArchiveBytes: 1_000, maxInstances: null } as any, 'u', { newFunctionName: 'f', adding: 1 })!;
    const plan = ((await db.knex.raw(`EXPLAIN QUERY PLAN ${read.sql}`, read.bindings)) as { detail: string }[]).map((r) => r.detail);
    const text = plan.join('\n');
    assert.not.match(text, 'function_deployments_status_lease_idx', text);
    assert.match(text, /SEARCH d USING COVERING INDEX function_deployments_building \(function_id=\?\)/, text);
    // the sized archives only: versions still waiting for their upload are not in the index
    assert.match(text, /SEARCH d USING COVERING INDEX function_deployments_stored_archives \(function_id=\? AND archive_size>\?\)/, text);
    assert.ok(plan.filter((d) => /SEARCH f USING (COVERING )?INDEX functions_user_id_name_unique \(user_id=\?\)/.test(d)).length >= 2, text);
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
