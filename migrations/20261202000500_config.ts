import type { Knex } from 'knex';

// Releases carry configuration: every version snapshots the configuration it runs with (what it
// sets; unset keys take the platform's defaults), says whether it came from a deploy or from a
// configuration change, and may carry deploy metadata (message, git sha, author).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => {
    // JSON (shared/domain/release-config.ts StoredConfig); secrets sealed with SECRETS_KEY
    t.text('config').notNullable().defaultTo('{}');
    // deploy | config
    t.string('source', 16).notNullable().defaultTo('deploy');
    // JSON {message?, gitSha?, author?}
    t.text('metadata');
    // a configuration change: the version whose built artifact and archive it reuses
    t.uuid('base_deployment_id');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => {
    t.dropColumn('config');
    t.dropColumn('source');
    t.dropColumn('metadata');
    t.dropColumn('base_deployment_id');
  });
}
