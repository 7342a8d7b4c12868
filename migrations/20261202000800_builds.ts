import type { Knex } from 'knex';

// Builds that cannot hang and retry with backoff (shared/domain/build-queue.ts): claims fenced by a
// token, not by the runner's id; when a failed attempt may be tried again; how long the build has
// been trying; and the last failure, kept after a later attempt succeeds.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => {
    // a fresh random value per claim: only the holder of this very claim may renew, finish, fail or
    // release the build (a runner that lost its lease, or shares its RUNNER_ID, holds another one)
    t.string('claim_token', 64);
    // a failed attempt is not claimed again before this time (the database's clock)
    t.timestamp('next_attempt_at', { useTz: true });
    // the first claim since the version was queued: an outage is waited out for BUILD_TIMEOUT_MS from here
    t.timestamp('first_attempt_at', { useTz: true });
    // retries after outages (S3, registry, engine, npm down): they spend no attempt, and back off on this count
    t.integer('outage_retries').notNullable().defaultTo(0);
    // the error of the last failed attempt, kept when a later attempt succeeds
    t.text('last_error');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => {
    t.dropColumn('claim_token');
    t.dropColumn('next_attempt_at');
    t.dropColumn('first_attempt_at');
    t.dropColumn('outage_retries');
    t.dropColumn('last_error');
  });
}
