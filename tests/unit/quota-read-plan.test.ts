// The quota read runs on every deploy and complete under the account's lock: on SQLite (never
// ANALYZEd, so planned without statistics) it must read the account's usage rows (kept by
// triggers) through their index by account, and never the versions themselves: their number grows
// with every stored archive and queued build.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openDatabase } from '../../shared/db/knex.ts';
import { accountQuotaRead } from '../../shared/domain/quotas.ts';

test('SQLite plans the quota read from the account: its usage rows, by account', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-quota-plan-'));
  const db = await openDatabase({ client: 'sqlite', filename: path.join(dir, 'db.sqlite') });
  try {
    const read = accountQuotaRead({ maxFunctions: 10, maxBuilds: 10, maxArchiveBytes: 1_000, maxInstances: null } as any, 'u', { newFunctionName: 'f', adding: 1 })!;
    const plan = ((await db.knex.raw(`EXPLAIN QUERY PLAN ${read.sql}`, read.bindings)) as { detail: string }[]).map((r) => r.detail);
    const text = plan.join('\n');
    assert.not.match(text, 'function_deployments', text);
    // builds and bytes: the account's usage rows, through their index by account
    assert.is(plan.filter((d) => /^SEARCH u USING (COVERING )?INDEX function_usage_user \(user_id=\?\)$/.test(d)).length, 2, text);
    assert.not.match(text, /SCAN (u|functions|function_usage)\b/, text);
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
