import type { Knex } from 'knex';

// What each invocation printed and how it ended: the function's own logs, kept apart from the
// deployment event log (function_logs) because there are many more of them.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('function_invocations', (t) => {
    t.bigIncrements('id').primary();
    t.uuid('function_id').notNullable().references('id').inTable('functions').onDelete('CASCADE');
    t.uuid('deployment_id').notNullable().references('id').inTable('function_deployments').onDelete('CASCADE');
    t.integer('version').notNullable();
    t.string('request_id', 64).notNullable();
    // ok | error | timeout
    t.string('outcome', 16).notNullable();
    t.integer('duration_ms').notNullable();
    t.text('logs');
    t.text('error');
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.index(['function_id', 'id'], 'function_invocations_function_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('function_invocations');
}
