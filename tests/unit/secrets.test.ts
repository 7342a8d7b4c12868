// SecretBox: AES-256-GCM round trips, and every way a sealed value must refuse to open (wrong key,
// altered bytes, another context, not a sealed value), without the plaintext in any message.
import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, loadConfig } from '../../shared/config.ts';
import {
  generateSecretsKey,
  parseSecretsKey,
  SecretBox,
  SecretDecryptError,
  SecretsKeyError,
  UnavailableSecretBox,
} from '../../shared/secrets.ts';

const PLAINTEXT = 'hunter2-s3cr3t-value-ünïcode-🔑';
const CONTEXT = 'fn-123/DATABASE_PASSWORD';
const box = () => new SecretBox(randomBytes(32));

function refuses(fn: () => unknown, pattern: RegExp): Error {
  try {
    fn();
  } catch (err) {
    assert.instance(err, SecretDecryptError);
    const message = (err as Error).message;
    assert.match(message, pattern);
    assert.not.ok(message.includes(PLAINTEXT), 'the plaintext is not in the message');
    return err as Error;
  }
  assert.unreachable('opened');
  throw new Error('unreachable');
}

test('seal then open gives the plaintext back (unicode, empty, long)', () => {
  const b = box();
  for (const value of [PLAINTEXT, '', 'x'.repeat(100_000)]) assert.is(b.open(b.seal(value, CONTEXT), CONTEXT), value);
});

test('the sealed form is v1:<iv>:<tag>:<ciphertext> in base64 and holds no plaintext', () => {
  const sealed = box().seal(PLAINTEXT, CONTEXT);
  const parts = sealed.split(':');
  assert.is(parts.length, 4);
  assert.is(parts[0], 'v1');
  assert.is(Buffer.from(parts[1]!, 'base64').length, 12, '96-bit IV');
  assert.is(Buffer.from(parts[2]!, 'base64').length, 16, '128-bit tag');
  assert.not.ok(sealed.includes(PLAINTEXT));
  assert.not.ok(sealed.includes(Buffer.from(PLAINTEXT).toString('base64')));
});

test('sealing twice gives different values (fresh IV), both open', () => {
  const b = box();
  const one = b.seal(PLAINTEXT, CONTEXT);
  const two = b.seal(PLAINTEXT, CONTEXT);
  assert.is.not(one, two);
  assert.ok(b.samePlaintext(one, two, CONTEXT));
  assert.not.ok(b.samePlaintext(one, b.seal('other', CONTEXT), CONTEXT));
});

test('a wrong key does not open it, with a message naming SECRETS_KEY', () => {
  const sealed = box().seal(PLAINTEXT, CONTEXT);
  refuses(() => box().open(sealed, CONTEXT), /SECRETS_KEY/);
});

test('a tampered ciphertext, tag or iv does not open', () => {
  const b = box();
  const sealed = b.seal(PLAINTEXT, CONTEXT);
  const [v, iv, tag, ct] = sealed.split(':') as [string, string, string, string];
  const flip = (s: string) => {
    const bytes = Buffer.from(s, 'base64');
    bytes[0] = bytes[0]! ^ 1;
    return bytes.toString('base64');
  };
  refuses(() => b.open([v, iv, tag, flip(ct)].join(':'), CONTEXT), /altered/);
  refuses(() => b.open([v, iv, flip(tag), ct].join(':'), CONTEXT), /altered/);
  refuses(() => b.open([v, flip(iv), tag, ct].join(':'), CONTEXT), /altered/);
});

test('a value sealed for one function and name does not open as another', () => {
  const b = box();
  const sealed = b.seal(PLAINTEXT, 'fn-1/TOKEN');
  refuses(() => b.open(sealed, 'fn-2/TOKEN'), /fn-2\/TOKEN/);
  refuses(() => b.open(sealed, 'fn-1/OTHER'), /could not be decrypted/);
});

test('something that is not a sealed value is refused clearly', () => {
  const b = box();
  for (const bad of ['', PLAINTEXT, 'v2:a:b:c', 'v1:only:three', 'v1:AAAA:AAAA:AAAA']) {
    refuses(() => b.open(bad, CONTEXT), /not a sealed value/);
  }
});

test('keys: 64 hex characters or base64 (url) of 32 bytes; anything else refused', () => {
  const raw = randomBytes(32);
  assert.equal(parseSecretsKey(raw.toString('hex')), raw);
  assert.equal(parseSecretsKey(raw.toString('base64')), raw);
  assert.equal(parseSecretsKey(raw.toString('base64url')), raw);
  assert.equal(parseSecretsKey(` ${raw.toString('base64')}\n`), raw, 'a key file line');
  assert.is(parseSecretsKey(generateSecretsKey())?.length, 32);
  for (const bad of ['', 'short', randomBytes(16).toString('hex'), randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), 'z'.repeat(64)]) {
    assert.is(parseSecretsKey(bad), null, bad);
  }
  assert.throws(() => new SecretBox(randomBytes(16)), (e: unknown) => e instanceof SecretsKeyError);
});

test('SECRETS_KEY: parsed into the config, refused when malformed without repeating the value', () => {
  const key = randomBytes(32).toString('base64');
  const c = loadConfig({ SECRETS_KEY: key, DATA_DIR: '/tmp/cp-secrets-x' });
  assert.is(c.secrets.key, key);
  assert.is(c.secrets.keyFile, '/tmp/cp-secrets-x/secrets.key');
  assert.is(loadConfig({}).secrets.key, undefined);
  const bad = 'not-a-key-but-a-secret-looking-value';
  try {
    loadConfig({ SECRETS_KEY: bad });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, ConfigError);
    assert.match((err as Error).message, 'SECRETS_KEY');
    assert.not.ok((err as Error).message.includes(bad));
  }
});

test('the box of a process without the key refuses every use', () => {
  const b = new UnavailableSecretBox('no key here');
  assert.throws(() => b.seal('x', CONTEXT), /no key here/);
  assert.throws(() => b.open('v1:a:b:c', CONTEXT), /no key here/);
});

test.run();
