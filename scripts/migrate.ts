// `npm run migrate [-- --status]`: brings the configured database (DATABASE_URL, or the SQLite file
// in DATA_DIR) to the latest schema, or with --status lists what is applied and what is pending.
// The API and the runners also migrate at start; this runs it alone (before a rolling deploy).
import { loadConfigOrExit } from '../shared/config.ts';
import { parseScriptArgs } from './script-args.ts';
import { createDb } from '../shared/db/knex.ts';
import { migrationSource } from '../migrations/index.ts';

const usage = `usage: npm run migrate -- [--status]
  (no option)  apply every pending migration
  --status     list applied and pending migrations; change nothing`;

const args = parseScriptArgs(usage, { status: { type: 'boolean', default: false } }).values;

const config = loadConfigOrExit();
const db = createDb(config.database, config.databaseTimeouts);
const where = config.database.client === 'sqlite' ? config.database.filename : 'PostgreSQL (DATABASE_URL)';
let code = 0;
try {
  if (args.status) {
    const [done, pending] = (await db.knex.migrate.list({ migrationSource })) as [{ name: string }[], string[]];
    process.stdout.write(`database: ${where}\n`);
    for (const m of done) process.stdout.write(`  applied  ${m.name}\n`);
    for (const m of pending) process.stdout.write(`  pending  ${m}\n`);
    process.stdout.write(`${done.length} applied, ${pending.length} pending\n`);
  } else {
    const [batch, names] = (await db.knex.migrate.latest({ migrationSource })) as [number, string[]];
    process.stdout.write(
      names.length === 0 ? `database: ${where}: already up to date\n` : `database: ${where}: applied ${names.join(', ')} (batch ${batch})\n`,
    );
  }
} catch (err) {
  process.stderr.write(`containerpub: migration failed: ${(err as Error).message}\n`);
  code = 1;
} finally {
  await db.close();
}
process.exit(code);
