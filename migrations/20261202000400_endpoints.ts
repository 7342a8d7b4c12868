import type { Knex } from 'knex';
import { deriveHandles } from '../shared/domain/handles.ts';

// Function endpoints: every account gets a handle (the first segment of its functions' URLs), every
// function an access mode, function keys for `key` access, and invocation records say which HTTP
// request they served.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('users', (t) => {
    t.string('handle', 39);
  });
  // Accounts made before handles existed get one derived from their email, in creation order.
  const users: { id: string; email: string }[] = await knex('users').select('id', 'email').orderBy([{ column: 'created_at' }, { column: 'id' }]);
  const handles = deriveHandles(users.map((u) => u.email));
  for (let i = 0; i < users.length; i++) await knex('users').where({ id: users[i]!.id }).update({ handle: handles[i] });
  await knex.schema.alterTable('users', (t) => {
    t.unique(['handle'], { indexName: 'users_handle_unique' });
  });

  await knex.schema.alterTable('functions', (t) => {
    // private | key | public (shared/domain/access.ts)
    t.string('access', 16).notNullable().defaultTo('private');
  });

  await knex.schema.createTable('function_keys', (t) => {
    t.uuid('id').primary();
    t.uuid('function_id').notNullable().references('id').inTable('functions').onDelete('CASCADE');
    t.string('name', 100).notNullable();
    // sha256 of the key: a leaked database does not leak usable keys
    t.string('key_hash', 64).notNullable().unique();
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.timestamp('last_used_at', { useTz: true });
    t.index(['function_id']);
  });

  await knex.schema.alterTable('function_invocations', (t) => {
    // the HTTP request an endpoint invocation served (null for POST …/invoke); the path without its query
    t.string('method', 16);
    t.string('path', 1024);
    // the status the caller got
    t.integer('status');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_invocations', (t) => {
    t.dropColumn('method');
    t.dropColumn('path');
    t.dropColumn('status');
  });
  await knex.schema.dropTableIfExists('function_keys');
  await knex.schema.alterTable('functions', (t) => {
    t.dropColumn('access');
  });
  await knex.schema.alterTable('users', (t) => {
    t.dropUnique(['handle'], 'users_handle_unique');
    t.dropColumn('handle');
  });
}
