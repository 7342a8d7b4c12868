import type { Knex } from 'knex';

// The build quota counts an account's queued and running builds on every deploy and complete,
// under the account's lock. The only index with the status in it is (status, lease_expires_at),
// the runners' queue: counting through it reads every account's builds. This index holds each
// function's builds only, so the count reads the account's own (quotas.ts).
export async function up(knex: Knex): Promise<void> {
  await knex.raw("CREATE INDEX function_deployments_building ON function_deployments (function_id) WHERE status = 'building'");
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX function_deployments_building');
}
