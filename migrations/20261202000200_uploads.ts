import type { Knex } from 'knex';

// Uploads through the API (embedded S3): the moment a PUT through a deployment's upload URL took
// it. Set by one request at a time (a fenced update), kept once the archive is stored, so the URL
// is single-use; cleared again when that PUT is refused or interrupted.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => {
    t.timestamp('upload_claimed_at', { useTz: true });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => {
    t.dropColumn('upload_claimed_at');
  });
}
