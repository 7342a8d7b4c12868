// `npm run users -- add <email> [--password-stdin]`: makes an account directly in the database, the
// way accounts are made when REGISTRATION=closed. Without --password-stdin a password is generated
// and printed once (it is stored only as a hash).
import { randomBytes } from 'node:crypto';
import { loadConfigOrExit } from '../shared/config.ts';
import { parseScriptArgs } from './script-args.ts';
import { openDatabase } from '../shared/db/knex.ts';
import { createUser, newAccountSchema } from '../shared/domain/auth.ts';
import { isAppError } from '../shared/errors.ts';

const usage = `usage: npm run users -- add <email> [--handle <handle>] [--password-stdin]
  add <email>        create an account (works whatever REGISTRATION says)
  --handle <handle>  the account's handle (its functions' URLs); derived from the email otherwise
  --password-stdin   read the password from the first line of stdin; otherwise one is generated
                     and printed once`;

function fail(message: string, code: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

const parsed = parseScriptArgs(usage, { 'password-stdin': { type: 'boolean', default: false }, handle: { type: 'string' } }, { positionals: true });
const [action, email, extra] = parsed.positionals;
if (action !== 'add' || email === undefined || extra !== undefined) fail(usage, 2);

async function readFirstLine(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += chunk;
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/)[0] ?? '';
}

const generated = !parsed.values['password-stdin'];
// 18 random bytes: 24 base64url characters, well over the 8-character minimum.
const password = generated ? randomBytes(18).toString('base64url') : await readFirstLine();
const account = newAccountSchema.safeParse({ email, password, handle: parsed.values.handle });
if (!account.success) {
  fail(`invalid account: ${account.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`, 2);
}

const config = loadConfigOrExit({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
const db = await openDatabase(config.database);
try {
  const user = await createUser(db, account.data.email, account.data.password, account.data.handle);
  process.stdout.write(`created ${user.email} (user ${user.userId}, handle ${user.handle})\n`);
  if (generated) process.stdout.write(`password: ${password}\n(shown once: it is stored only as a hash)\n`);
} catch (err) {
  if (isAppError(err)) fail(`cannot create ${email}: ${err.message}`, 1);
  throw err;
} finally {
  await db.close();
}
