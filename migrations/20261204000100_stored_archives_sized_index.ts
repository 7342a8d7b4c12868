import type { Knex } from 'knex';

// The archive-bytes quota's index (…_stored_archives_index) also held the versions whose archive
// is not uploaded yet (archive_size NULL: a /deploy waiting for its upload, or one abandoned), which
// the sum reads and adds nothing for: every deploy of a CI pipeline that never uploads made every
// later deploy and complete of the account read one more entry under its lock. The index now holds
// the sized archives only, and the quota read asks for exactly those (quotas.ts).
export async function up(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX function_deployments_stored_archives');
  await knex.raw(
    // archive_removed_at among the columns too, as before: SQLite reads a partial index alone (covering)
    // only when it holds every column the query names, the predicate's included
    'CREATE INDEX function_deployments_stored_archives ON function_deployments (function_id, archive_size, archive_removed_at) WHERE archive_removed_at IS NULL AND archive_size IS NOT NULL',
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX function_deployments_stored_archives');
  await knex.raw(
    'CREATE INDEX function_deployments_stored_archives ON function_deployments (function_id, archive_size, archive_removed_at) WHERE archive_removed_at IS NULL',
  );
}
