// Configuration: defaults, and a bad value stops the process with a message naming the variable.
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, loadConfig } from '../../shared/config.ts';
import { nodeArgsFor } from '../support/bundle.ts';

test('defaults: SQLite in DATA_DIR, embedded S3, documented limits', () => {
  const c = loadConfig({});
  assert.is(c.server.port, 8080);
  assert.is(c.server.host, '127.0.0.1');
  assert.is(c.database.client, 'sqlite');
  assert.ok(c.database.client === 'sqlite' && c.database.filename.endsWith('data/containerpub.sqlite'));
  assert.is(c.s3.endpoint, undefined);
  assert.is(c.uploads.urlTtlSeconds, 900);
  assert.is(c.uploads.maxArchiveBytes, 50 * 1024 * 1024);
  assert.is(c.retention.keepLastN, 10);
  assert.is(c.server.maxWaitingRequests, 10_000);
  assert.is(loadConfig({ API_MAX_WAITING_REQUESTS: '64' }).server.maxWaitingRequests, 64);
  assert.throws(() => loadConfig({ API_MAX_WAITING_REQUESTS: '0' }), /API_MAX_WAITING_REQUESTS/);
});

test('DATABASE_URL postgres:// selects PostgreSQL', () => {
  const c = loadConfig({ DATABASE_URL: 'postgres://u:p@h:5432/db' });
  assert.equal(c.database, { client: 'pg', url: 'postgres://u:p@h:5432/db' });
});

for (const [name, value] of [
  ['PORT', 'eighty'],
  ['PORT', '70000'],
  ['UPLOAD_URL_TTL_SECONDS', '0'],
  ['MAX_ARCHIVE_BYTES', '-5'],
  ['KEEP_LAST_N', '1.5'],
  ['DATABASE_URL', 'mysql://x'],
  ['S3_ENDPOINT', 'not a url'],
  ['S3_BUCKET', 'Bad_Bucket'],
  ['TOKEN_TTL_DAYS', '0'],
  ['REGISTRATION', 'invite-only'],
  ['AUTH_RATE_LIMIT_PER_MINUTE', '-1'],
  ['AUTH_RATE_LIMIT_PER_EMAIL_PER_MINUTE', 'lots'],
  ['TRUST_PROXY', 'yes'],
  ['SESSION_COOKIE_SECURE', 'yes'],
] as const) {
  test(`${name}=${value} is refused with the variable named`, () => {
    try {
      loadConfig({ [name]: value });
      assert.unreachable();
    } catch (err) {
      assert.instance(err, ConfigError);
      assert.match((err as Error).message, name);
    }
  });
}

test('accounts: 30-day tokens, open sign-up, 10 attempts a minute per address and per email, no proxy trusted, a Secure session cookie over https only', () => {
  assert.equal(loadConfig({}).auth, {
    tokenTtlDays: 30,
    registration: 'open',
    rateLimitPerAddress: 10,
    rateLimitPerEmail: 10,
    trustProxy: false,
    sessionCookieSecure: 'auto',
  });
});

test('S3_ENDPOINT needs credentials', () => {
  assert.throws(() => loadConfig({ S3_ENDPOINT: 'http://127.0.0.1:9000' }), /S3_ACCESS_KEY_ID/);
});

test('a bad value stops the real process with exit code 2 and the name, no stack trace', () => {
  const out = spawnSync(process.execPath, nodeArgsFor('api/main.ts'), {
    env: { ...process.env, PORT: 'nope' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.is(out.status, 2);
  assert.match(out.stderr, /PORT/);
  assert.not.match(out.stderr, /at .*\(/);
});

test.run();
