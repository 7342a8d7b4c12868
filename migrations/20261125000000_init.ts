import type { Knex } from 'knex';

// Timestamps: timestamptz on PostgreSQL; on SQLite ISO-8601 UTC strings, which sort as they compare.
// Every timestamp the platform writes comes from shared/db/time.ts.
export async function up(knex: Knex): Promise<void> {
  const ts = (t: Knex.CreateTableBuilder, name: string) => t.timestamp(name, { useTz: true });

  await knex.schema.createTable('users', (t) => {
    t.uuid('id').primary();
    t.string('email', 320).notNullable().unique();
    t.string('password_hash', 255).notNullable();
    ts(t, 'created_at').notNullable();
  });

  await knex.schema.createTable('api_tokens', (t) => {
    t.uuid('id').primary();
    t.uuid('user_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    // sha256 of the token: a leaked database does not leak usable tokens.
    t.string('token_hash', 64).notNullable().unique();
    ts(t, 'created_at').notNullable();
    ts(t, 'last_used_at');
    t.index(['user_id']);
  });

  await knex.schema.createTable('functions', (t) => {
    t.uuid('id').primary();
    t.uuid('user_id').notNullable().references('id').inTable('users').onDelete('CASCADE');
    t.string('name', 63).notNullable();
    // pending: nothing built yet; active: a live deployment serves it.
    t.string('status', 50).notNullable().defaultTo('pending');
    // No FK: it would be circular with function_deployments; activateDeployment keeps it in step
    // with the one is_active row.
    t.uuid('active_deployment_id');
    // Highest version ever allocated; versions are never reused, even when rows fail or expire.
    t.integer('last_version').notNullable().defaultTo(0);
    // Logical clock of user intents (deploy requests and rollbacks) for this function, and the
    // intent behind the live version: a finished build only takes over when its deploy request is
    // newer than what made the current version live. A counter, not wall-clock time, so replicas
    // with skewed clocks still agree.
    t.bigInteger('intent_seq').notNullable().defaultTo(0);
    t.bigInteger('active_intent_seq').notNullable().defaultTo(0);
    ts(t, 'created_at').notNullable();
    ts(t, 'updated_at').notNullable();
    t.unique(['user_id', 'name']);
  });

  await knex.schema.createTable('function_deployments', (t) => {
    t.uuid('id').primary();
    t.uuid('function_id').notNullable().references('id').inTable('functions').onDelete('CASCADE');
    t.integer('version').notNullable();
    // Known once built (the runner's registry decides the full tag).
    t.string('image_tag', 255);
    t.string('s3_key', 500).notNullable();
    t.string('status', 50).notNullable().defaultTo('pending_upload');
    t.boolean('is_active').notNullable().defaultTo(false);
    t.text('build_logs');
    t.text('error');
    t.bigInteger('declared_size');
    t.string('declared_sha256', 64);
    t.bigInteger('archive_size');
    t.string('archive_sha256', 64);
    t.bigInteger('intent_seq').notNullable();
    // Runner claim: who holds the build, until when, and how many times it was claimed.
    t.string('claimed_by', 200);
    ts(t, 'lease_expires_at');
    t.integer('attempts').notNullable().defaultTo(0);
    ts(t, 'upload_expires_at');
    ts(t, 'queued_at');
    ts(t, 'deployed_at');
    ts(t, 'activated_at');
    ts(t, 'created_at').notNullable();
    ts(t, 'updated_at').notNullable();
    t.unique(['function_id', 'version']);
    t.index(['status', 'lease_expires_at'], 'function_deployments_status_lease_idx');
  });
  // At most one live deployment per function, enforced by the database itself.
  await knex.raw(
    'CREATE UNIQUE INDEX function_deployments_one_active ON function_deployments (function_id) WHERE is_active',
  );

  await knex.schema.createTable('function_logs', (t) => {
    t.bigIncrements('id').primary();
    t.uuid('function_id').notNullable().references('id').inTable('functions').onDelete('CASCADE');
    t.uuid('deployment_id').references('id').inTable('function_deployments').onDelete('CASCADE');
    t.integer('version');
    t.string('event', 50).notNullable();
    t.text('message').notNullable();
    ts(t, 'created_at').notNullable();
    t.index(['function_id', 'id'], 'function_logs_function_idx');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('function_logs');
  await knex.schema.dropTableIfExists('function_deployments');
  await knex.schema.dropTableIfExists('functions');
  await knex.schema.dropTableIfExists('api_tokens');
  await knex.schema.dropTableIfExists('users');
}
