import type { Knex } from 'knex';

// Health that tells (issue 16): runners record a heartbeat, so GET /api/status can list the ones
// alive; and a deployment keeps the id of the request that created it, so the runner's build of it
// logs with that id.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('runners', (t) => {
    t.string('id', 200).primary();
    t.timestamp('started_at', { useTz: true }).notNullable();
    t.timestamp('last_seen_at', { useTz: true }).notNullable();
    t.string('driver', 20);
    t.string('version', 50);
    t.string('hostname', 255);
    t.integer('pid');
    t.integer('concurrency');
    t.integer('running_builds').notNullable().defaultTo(0);
    t.index(['last_seen_at'], 'runners_last_seen_at_idx');
  });
  await knex.schema.alterTable('function_deployments', (t) => {
    // the X-Request-Id of the POST …/deploy that allocated the version (shared/observability/request-context.ts)
    t.string('request_id', 128);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => t.dropColumn('request_id'));
  await knex.schema.dropTable('runners');
}
