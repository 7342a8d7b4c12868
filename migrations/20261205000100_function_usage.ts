import type { Knex } from 'knex';

// What the build and archive-bytes quotas count, kept per function by the database itself: its
// builds queued or running (status 'building') and the bytes of its stored archives (sized, not
// removed). The quota read (quotas.ts) ran on every deploy and complete under the account's lock
// and counted the account's versions one by one, through partial indexes: its cost grew with every
// stored archive and queued build (on SQLite, /deploy at 16 clients served 27-31 % more requests a
// second with those quotas off, with 550 of each: docs/benchmarks.md, issue 15's sixteenth pass).
// It now reads the account's usage rows, one per function, through their index by account
// (user_id, copied from the function: a function never changes hands).
//
// Triggers keep the counts, so no writer can forget them: every INSERT, UPDATE and DELETE of a
// version that changes what it adds (its status to or from 'building', its archive's size or
// removal), whoever makes it (the API, a runner, cleanup, a cascade from a deleted function, a
// replica running older code). A function's row is made with it (a trigger on functions) and goes
// with it (ON DELETE CASCADE). A trigger's UPDATE holds the usage row's lock until commit; no
// writer then waits for a lock that another writer of counts takes first (a complete takes none
// after it; the runner holds the function's lock before it; cleanup's bulk update of failed
// versions locks rows no other writer of counts locks): docs/design.md.
//
// Created before the backfill, in the same transaction: the triggers' lock on the tables holds off
// every writer until the counts are complete.

/** What a version adds to its function's counts, as SQL over a row alias (NEW or OLD). */
const building = (r: string) => `CASE WHEN ${r}.status = 'building' THEN 1 ELSE 0 END`;
const storedBytes = (r: string) => `CASE WHEN ${r}.archive_removed_at IS NULL THEN COALESCE(${r}.archive_size, 0) ELSE 0 END`;
/** Whether a version adds anything (the triggers fire only then). */
const counted = (r: string) => `(${r}.status = 'building' OR (${r}.archive_size IS NOT NULL AND ${r}.archive_removed_at IS NULL))`;
const changed = `(OLD.status IS DISTINCT FROM NEW.status OR OLD.archive_size IS DISTINCT FROM NEW.archive_size OR OLD.archive_removed_at IS DISTINCT FROM NEW.archive_removed_at)`;

const BACKFILL = `INSERT INTO function_usage (function_id, user_id, builds, archive_bytes)
  SELECT f.id, f.user_id, COALESCE(sum(${building('d')}), 0), COALESCE(sum(${storedBytes('d')}), 0)
  FROM functions f LEFT JOIN function_deployments d ON d.function_id = f.id
  GROUP BY f.id, f.user_id`;

/**
 * The partial indexes the quota read counted through (migrations …_building_index and
 * …_stored_archives_sized_index): nothing else reads them (the build queue's scans go through
 * (status, lease_expires_at)), and every write of a version kept them up to date. `down` makes them again.
 */
const COUNTING_INDEXES = {
  function_deployments_building: "CREATE INDEX function_deployments_building ON function_deployments (function_id) WHERE status = 'building'",
  function_deployments_stored_archives:
    'CREATE INDEX function_deployments_stored_archives ON function_deployments (function_id, archive_size, archive_removed_at) WHERE archive_removed_at IS NULL AND archive_size IS NOT NULL',
};

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('function_usage', (t) => {
    t.uuid('function_id').primary().references('id').inTable('functions').onDelete('CASCADE');
    // no foreign key of its own: the function's cascades, and its owner's
    t.uuid('user_id').notNullable();
    t.integer('builds').notNullable().defaultTo(0);
    t.bigInteger('archive_bytes').notNullable().defaultTo(0);
    // by account only: with the counts out of every index, PostgreSQL updates them in place (HOT)
    t.index(['user_id'], 'function_usage_user');
  });
  if (knex.client.config.client === 'pg') {
    await knex.raw(`CREATE FUNCTION function_usage_create() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO function_usage (function_id, user_id) VALUES (NEW.id, NEW.user_id) ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$`);
    await knex.raw(`CREATE FUNCTION function_usage_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  d_builds integer := 0;
  d_bytes bigint := 0;
  fn uuid;
BEGIN
  IF TG_OP <> 'DELETE' THEN
    fn := NEW.function_id;
    d_builds := ${building('NEW')};
    d_bytes := ${storedBytes('NEW')};
  END IF;
  IF TG_OP <> 'INSERT' THEN
    fn := OLD.function_id;
    d_builds := d_builds - ${building('OLD')};
    d_bytes := d_bytes - ${storedBytes('OLD')};
  END IF;
  IF d_builds <> 0 OR d_bytes <> 0 THEN
    UPDATE function_usage SET builds = builds + d_builds, archive_bytes = archive_bytes + d_bytes WHERE function_id = fn;
  END IF;
  RETURN NULL;
END $$`);
    await knex.raw('CREATE TRIGGER functions_usage_create AFTER INSERT ON functions FOR EACH ROW EXECUTE FUNCTION function_usage_create()');
    await knex.raw(`CREATE TRIGGER function_deployments_usage_insert AFTER INSERT ON function_deployments FOR EACH ROW WHEN ${counted('NEW')} EXECUTE FUNCTION function_usage_count()`);
    await knex.raw(
      `CREATE TRIGGER function_deployments_usage_update AFTER UPDATE OF status, archive_size, archive_removed_at ON function_deployments FOR EACH ROW WHEN ${changed} EXECUTE FUNCTION function_usage_count()`,
    );
    await knex.raw(`CREATE TRIGGER function_deployments_usage_delete AFTER DELETE ON function_deployments FOR EACH ROW WHEN ${counted('OLD')} EXECUTE FUNCTION function_usage_count()`);
  } else {
    const add = (r: string, sign: '+' | '-') =>
      `UPDATE function_usage SET builds = builds ${sign} ${building(r)}, archive_bytes = archive_bytes ${sign} ${storedBytes(r)} WHERE function_id = ${r}.function_id;`;
    await knex.raw('CREATE TRIGGER functions_usage_create AFTER INSERT ON functions BEGIN INSERT OR IGNORE INTO function_usage (function_id, user_id) VALUES (NEW.id, NEW.user_id); END');
    await knex.raw(`CREATE TRIGGER function_deployments_usage_insert AFTER INSERT ON function_deployments WHEN ${counted('NEW')} BEGIN ${add('NEW', '+')} END`);
    await knex.raw(
      `CREATE TRIGGER function_deployments_usage_update AFTER UPDATE OF status, archive_size, archive_removed_at ON function_deployments WHEN ${changed} BEGIN ${add('OLD', '-')} ${add('NEW', '+')} END`,
    );
    await knex.raw(`CREATE TRIGGER function_deployments_usage_delete AFTER DELETE ON function_deployments WHEN ${counted('OLD')} BEGIN ${add('OLD', '-')} END`);
  }
  await knex.raw(BACKFILL);
  for (const name of Object.keys(COUNTING_INDEXES)) await knex.raw(`DROP INDEX ${name}`);
}

export async function down(knex: Knex): Promise<void> {
  for (const trigger of ['function_deployments_usage_insert', 'function_deployments_usage_update', 'function_deployments_usage_delete']) {
    await knex.raw(`DROP TRIGGER ${trigger}${knex.client.config.client === 'pg' ? ' ON function_deployments' : ''}`);
  }
  await knex.raw(`DROP TRIGGER functions_usage_create${knex.client.config.client === 'pg' ? ' ON functions' : ''}`);
  if (knex.client.config.client === 'pg') {
    await knex.raw('DROP FUNCTION function_usage_count()');
    await knex.raw('DROP FUNCTION function_usage_create()');
  }
  await knex.schema.dropTable('function_usage');
  for (const create of Object.values(COUNTING_INDEXES)) await knex.raw(create);
}
