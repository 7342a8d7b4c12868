// The quota read runs on every deploy and complete under the account's lock: on SQLite (never
// ANALYZEd, so planned without statistics) it must go from the account's functions to their usage
// rows (kept by triggers), one lookup each, and never read the versions themselves: their number
// grows with every stored archive and queued build.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openDatabase } from '../../shared/db/knex.ts';
import { accountQuotaRead } from '../../shared/domain/quotas.ts';

test('SQLite plans the quota read from the account, one usage row per function', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-quota-plan-'));
  const db = await openDatabase({ client: 'sqlite', filename: path.join(dir, 'db.sqlite') });
  try {
    const read = accountQuotaRead({ maxFunctions: 10, maxBuilds: 10, maxArchiveBytes: 1_000, maxInstances: null } as any, 'u', { newFunctionName: 'f', adding: 1 })!;
    const plan = ((await db.knex.raw(`EXPLAIN QUERY PLAN ${read.sql}`, read.bindings)) as { detail: string }[]).map((r) => r.detail);
    const text = plan.join('\n');
    assert.not.match(text, 'function_deployments', text);
    // builds and bytes: one usage row per function, by its primary key
    assert.is(plan.filter((d) => /^SEARCH u USING (COVERING )?INDEX sqlite_autoindex_function_usage_1 \(function_id=\?\)$/.test(d)).length, 2, text);
    assert.ok(plan.filter((d) => /SEARCH f USING (COVERING )?INDEX functions_user_id_name_unique \(user_id=\?\)/.test(d)).length >= 2, text);
    assert.not.match(text, /SCAN (u|f)\b/, text);
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
