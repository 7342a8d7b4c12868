import type { Knex } from 'knex';

// Safety: which runtime driver built each version, so invocation, cleanup and deletion use that
// driver (or refuse) instead of whatever driver the current process happens to run.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => {
    // 'docker' | 'process'; NULL for versions built before this column existed (see
    // shared/domain/version-driver.ts for how those are read).
    t.string('runtime_driver', 20);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => {
    t.dropColumn('runtime_driver');
  });
}
