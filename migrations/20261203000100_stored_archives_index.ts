import type { Knex } from 'knex';

// The archive-bytes quota sums the archives an account still stores on every deploy and complete,
// under the account's lock. With only (function_id, version) to go by, that read every version's
// row: 0.7 ms on SQLite at 3,000 versions, growing with the account's history. This index holds
// exactly the rows the sum reads (archive not removed), with the size, so the sum reads the index
// alone.
export async function up(knex: Knex): Promise<void> {
  await knex.raw(
    'CREATE INDEX function_deployments_stored_archives ON function_deployments (function_id, archive_size, archive_removed_at) WHERE archive_removed_at IS NULL',
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX function_deployments_stored_archives');
}
