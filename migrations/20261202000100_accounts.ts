import type { Knex } from 'knex';

// Tokens that expire and carry a name (named tokens for CI; "login" for the ones login and
// register hand out). Tokens issued before this migration get 30 days from now rather than from
// their creation: an upgrade must not log every existing client out at once.
const GRACE_DAYS = 30;

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('api_tokens', (t) => {
    t.string('name', 100);
    // Nullable only because SQLite cannot add a NOT NULL column without a default; every token
    // written gets one, and a token without one is refused (shared/domain/tokens.ts).
    t.timestamp('expires_at', { useTz: true });
  });
  await knex('api_tokens')
    .whereNull('expires_at')
    .update({ expires_at: new Date(Date.now() + GRACE_DAYS * 86_400_000).toISOString(), name: 'login' });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('api_tokens', (t) => {
    t.dropColumns('name', 'expires_at');
  });
}
