import type { Knex } from 'knex';

// Retention: where a version's archive lives once cleanup has moved it, what cleanup removed, and
// the lock rows that keep cleanup runs from overlapping on SQLite (PostgreSQL uses an advisory lock).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('function_deployments', (t) => {
    // NULL: the archive is at s3_key. Otherwise its current key (ARCHIVE_MODE=prefix moves it).
    t.string('archive_key', 500);
    t.string('archive_storage_class', 50);
    // Set when the archive object was deleted (ARCHIVE_MODE=delete, expired uploads, old failures).
    t.timestamp('archive_removed_at', { useTz: true });
    // Set when the built image (or unpacked directory) was removed.
    t.timestamp('image_removed_at', { useTz: true });
    t.timestamp('archived_at', { useTz: true });
    // What cleanup did to this version, in words.
    t.text('cleanup_note');
  });
  await knex.schema.createTable('platform_locks', (t) => {
    t.string('name', 100).primary();
    t.string('holder', 200);
    t.timestamp('expires_at', { useTz: true });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('platform_locks');
  await knex.schema.alterTable('function_deployments', (t) => {
    t.dropColumns('archive_key', 'archive_storage_class', 'archive_removed_at', 'image_removed_at', 'archived_at', 'cleanup_note');
  });
}
