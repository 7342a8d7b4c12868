import type { Knex } from 'knex';

// Progressive delivery: a candidate version beside the live one (traffic split), tags, approval,
// canaries driven by the runner, and per-version metrics in per-minute buckets.
export async function up(knex: Knex): Promise<void> {
  const ts = (t: Knex.CreateTableBuilder | Knex.AlterTableBuilder, name: string) => t.timestamp(name, { useTz: true });

  await knex.schema.alterTable('functions', (t) => {
    // the candidate version and the share of traffic it takes (0–100); the live version takes the rest
    t.uuid('candidate_deployment_id');
    t.integer('candidate_percent').notNullable().defaultTo(0);
    // sticky split: a caller's traffic key always lands on the same version while the split is unchanged
    t.boolean('traffic_sticky').notNullable().defaultTo(false);
    // every deploy waits for approval (never goes live by itself)
    t.boolean('require_approval').notNullable().defaultTo(false);
  });

  await knex.schema.alterTable('function_deployments', (t) => {
    // false: built, never made live by the build (a deploy with activate:false, or requireApproval)
    t.boolean('auto_activate').notNullable().defaultTo(true);
    // who first made a version that waited for approval live or a candidate, and when
    t.string('approved_by', 320);
    ts(t, 'approved_at');
  });

  await knex.schema.createTable('function_tags', (t) => {
    t.uuid('function_id').notNullable().references('id').inTable('functions').onDelete('CASCADE');
    t.string('tag', 31).notNullable();
    t.uuid('deployment_id').notNullable().references('id').inTable('function_deployments').onDelete('CASCADE');
    ts(t, 'created_at').notNullable();
    ts(t, 'updated_at').notNullable();
    t.primary(['function_id', 'tag']);
    t.index(['deployment_id']);
  });

  await knex.schema.createTable('function_canaries', (t) => {
    t.uuid('id').primary();
    t.uuid('function_id').notNullable().references('id').inTable('functions').onDelete('CASCADE');
    t.uuid('deployment_id').notNullable().references('id').inTable('function_deployments').onDelete('CASCADE');
    t.integer('version').notNullable();
    // running | promoted | rolled_back | aborted
    t.string('status', 16).notNullable();
    // JSON: [5, 25, 50, 100]
    t.text('steps').notNullable();
    t.integer('step_index').notNullable().defaultTo(0);
    t.integer('interval_seconds').notNullable();
    t.double('max_error_rate').notNullable();
    t.integer('max_p99_ms');
    t.integer('min_requests').notNullable();
    // when the current step began, and the candidate's cumulative figures then (JSON): the window is what came after
    ts(t, 'step_started_at').notNullable();
    t.text('window_baseline');
    // the last evaluation's figures (JSON) and why the canary ended
    t.text('last_window');
    t.text('reason');
    t.string('started_by', 320);
    ts(t, 'created_at').notNullable();
    ts(t, 'updated_at').notNullable();
    ts(t, 'finished_at');
    t.index(['function_id', 'created_at']);
    t.index(['status']);
  });
  // at most one running canary per function, enforced by the database itself
  await knex.raw("CREATE UNIQUE INDEX function_canaries_one_running ON function_canaries (function_id) WHERE status = 'running'");

  await knex.schema.createTable('function_metrics', (t) => {
    t.uuid('function_id').notNullable().references('id').inTable('functions').onDelete('CASCADE');
    t.uuid('deployment_id').notNullable().references('id').inTable('function_deployments').onDelete('CASCADE');
    t.integer('version').notNullable();
    // the bucket's minute (start, UTC)
    ts(t, 'minute').notNullable();
    // the serving process that counted these: each process upserts its own cumulative row per minute
    t.string('source', 100).notNullable();
    t.integer('requests').notNullable().defaultTo(0);
    t.integer('errors').notNullable().defaultTo(0);
    t.integer('timeouts').notNullable().defaultTo(0);
    t.integer('crashes').notNullable().defaultTo(0);
    t.double('duration_sum_ms').notNullable().defaultTo(0);
    // JSON array of counts per latency bucket (shared/domain/metrics.ts LATENCY_BOUNDS_MS)
    t.text('latency').notNullable();
    t.primary(['deployment_id', 'minute', 'source']);
    t.index(['function_id', 'minute']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('function_metrics');
  await knex.schema.dropTableIfExists('function_canaries');
  await knex.schema.dropTableIfExists('function_tags');
  await knex.schema.alterTable('function_deployments', (t) => {
    t.dropColumn('auto_activate');
    t.dropColumn('approved_by');
    t.dropColumn('approved_at');
  });
  await knex.schema.alterTable('functions', (t) => {
    t.dropColumn('candidate_deployment_id');
    t.dropColumn('candidate_percent');
    t.dropColumn('traffic_sticky');
    t.dropColumn('require_approval');
  });
}
