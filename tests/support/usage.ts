// The build and archive-bytes quotas read each function's usage row (function_usage), which the
// database's triggers keep as versions are written (migrations …_function_usage). A suite that
// drives versions through many paths ends by recounting every function's versions and comparing:
// a path the triggers missed leaves a difference.
import type { Knex } from 'knex';
import * as assert from 'uvu/assert';
import { num } from '../../shared/db/dialect.ts';

const RECOUNT = `SELECT f.id, f.user_id, u.user_id AS kept_user_id,
    (SELECT count(*) FROM function_deployments d WHERE d.function_id = f.id AND d.status = 'building') AS builds,
    (SELECT COALESCE(sum(d.archive_size), 0) FROM function_deployments d WHERE d.function_id = f.id AND d.archive_removed_at IS NULL AND d.archive_size IS NOT NULL) AS archive_bytes,
    u.function_id AS usage_row, u.builds AS kept_builds, u.archive_bytes AS kept_archive_bytes
  FROM functions f LEFT JOIN function_usage u ON u.function_id = f.id`;

/** Every function's usage row against a recount of its versions; `counted`: what was compared. */
export async function assertUsageAgrees(knex: Knex): Promise<{ functions: number; builds: number; archiveBytes: number }> {
  const result = await knex.raw(RECOUNT);
  const rows = (Array.isArray(result) ? result : result.rows) as Record<string, unknown>[];
  const differ = rows
    .filter((r) => r.usage_row === null || r.kept_user_id !== r.user_id || num(r.builds) !== num(r.kept_builds) || num(r.archive_bytes) !== num(r.kept_archive_bytes))
    .map((r) => `${r.id}: counted ${num(r.builds)} builds / ${num(r.archive_bytes)} bytes, kept ${r.usage_row === null ? 'no row' : `${num(r.kept_builds)} / ${num(r.kept_archive_bytes)} for account ${r.kept_user_id}`}`);
  assert.equal(differ, [], 'the usage rows agree with a recount');
  const orphans = await knex('function_usage').whereNotIn('function_id', knex('functions').select('id')).count({ n: '*' });
  assert.is(num(orphans[0]?.n), 0, 'no usage row outlives its function');
  return {
    functions: rows.length,
    builds: rows.reduce((s, r) => s + num(r.builds), 0),
    archiveBytes: rows.reduce((s, r) => s + num(r.archive_bytes), 0),
  };
}
