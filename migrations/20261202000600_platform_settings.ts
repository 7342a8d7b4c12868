import type { Knex } from 'knex';

// Platform-wide values kept in the database, one row each. The first: `secrets_key_check`, a value
// sealed under the secrets key (shared/secrets.ts) so every start can tell a wrong SECRETS_KEY.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('platform_settings', (t) => {
    t.string('name', 100).primary();
    t.text('value').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('platform_settings');
}
