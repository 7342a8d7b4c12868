// Function secrets at rest: AES-256-GCM under one platform key (SECRETS_KEY, else DATA_DIR/secrets.key,
// which `npm start` generates on first run). A sealed value is `v1:<iv>:<tag>:<ciphertext>` (base64),
// bound by its context (the AAD: `${functionId}/${NAME}`) to the one function and name it was sealed
// for, so a sealed string copied elsewhere in the database does not open.
//
// A key check value in platform_settings is written on first use and verified by every start: a
// process given the wrong key (or none) refuses to start rather than run functions without their
// secrets. No message here ever carries a key, a plaintext or a sealed value.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.ts';
import type { Db } from './db/knex.ts';
import type { Logger } from './logger.ts';
import type { SecretSealer } from './domain/release-config.ts';
import { rememberSecretValue } from './observability/redact.ts';

const ALGORITHM = 'aes-256-gcm';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const VERSION = 'v1';

/** The platform_settings row holding the key check value. */
export const KEY_CHECK_SETTING = 'secrets_key_check';
const KEY_CHECK_CONTEXT = 'platform/secrets_key_check';
const KEY_CHECK_PLAINTEXT = 'containerpub secrets key check';

const HEX_KEY = /^[0-9a-fA-F]{64}$/;
// base64 or base64url of 32 bytes: 43 characters and an optional pad
const BASE64_KEY = /^[A-Za-z0-9+/_-]{43}=?$/;

/** The 32 key bytes of a SECRETS_KEY text (64 hex characters, or base64 / base64url), or null. */
export function parseSecretsKey(text: string): Buffer | null {
  const t = text.trim();
  if (HEX_KEY.test(t)) return Buffer.from(t, 'hex');
  if (BASE64_KEY.test(t)) {
    const bytes = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    return bytes.length === KEY_BYTES ? bytes : null;
  }
  return null;
}

export function isSecretsKey(text: string): boolean {
  return parseSecretsKey(text) !== null;
}

/** A new random key, in the form the key file holds (base64). */
export function generateSecretsKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

/** The secrets key is missing, malformed or not the one the stored secrets were sealed under. */
export class SecretsKeyError extends Error {
  override name = 'SecretsKeyError';
}

/** A sealed value did not open: wrong key, altered data, or sealed for another context. */
export class SecretDecryptError extends Error {
  override name = 'SecretDecryptError';
}

export class SecretBox implements SecretSealer {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) throw new SecretsKeyError(`a secrets key is ${KEY_BYTES} bytes, not ${key.length}`);
    this.#key = Buffer.from(key);
  }

  /** Encrypts `plaintext` for `context` (e.g. `${functionId}/${NAME}`). A fresh IV each time. */
  seal(plaintext: string, context: string): string {
    // the API holds the plaintext while it seals it: no log line of this process may carry it either
    rememberSecretValue(plaintext);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(ALGORITHM, this.#key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return `${VERSION}:${iv.toString('base64')}:${tag.toString('base64')}:${ciphertext.toString('base64')}`;
  }

  /** The plaintext `sealed` holds; a SecretDecryptError (naming the context only) when it does not open. */
  open(sealed: string, context: string): string {
    const parts = typeof sealed === 'string' ? sealed.split(':') : [];
    if (parts.length !== 4 || parts[0] !== VERSION) {
      throw new SecretDecryptError(`the stored secret ${context} is not a sealed value this platform understands`);
    }
    const iv = Buffer.from(parts[1]!, 'base64');
    const tag = Buffer.from(parts[2]!, 'base64');
    const ciphertext = Buffer.from(parts[3]!, 'base64');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) {
      throw new SecretDecryptError(`the stored secret ${context} is not a sealed value this platform understands`);
    }
    try {
      const decipher = createDecipheriv(ALGORITHM, this.#key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(tag);
      const plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
      // from here on no log line of this process can carry it (shared/observability/redact.ts)
      rememberSecretValue(plaintext);
      return plaintext;
    } catch {
      throw new SecretDecryptError(
        `the stored secret ${context} could not be decrypted: SECRETS_KEY is not the key it was sealed with, or the stored value was altered`,
      );
    }
  }

  /** Whether two sealed values (of one context) hold the same plaintext. */
  samePlaintext(a: string, b: string, context: string): boolean {
    return a === b || this.open(a, context) === this.open(b, context);
  }
}

/**
 * A box for processes that never touch secrets (`npm run cleanup`): every use throws. Processes
 * that serve or build functions load the real key (loadSecretBox) and refuse to start without it.
 */
export class UnavailableSecretBox extends SecretBox {
  constructor(private readonly why: string) {
    super(Buffer.alloc(KEY_BYTES));
  }
  override seal(_plaintext: string, _context: string): string {
    throw new SecretsKeyError(this.why);
  }
  override open(_sealed: string, _context: string): string {
    throw new SecretsKeyError(this.why);
  }
}

export interface LoadSecretBoxOptions {
  /** `npm start`: create DATA_DIR/secrets.key when there is no key yet (and no secret sealed under another) */
  generate: boolean;
  logger?: Logger;
}

/**
 * The platform's SecretBox: SECRETS_KEY, else the key file, else (generate) a new key file
 * (mode 0600). Verifies the key against the stored key check value, writing it on first use.
 * Throws a SecretsKeyError, naming SECRETS_KEY, when the key is missing, malformed or wrong.
 */
export async function loadSecretBox(
  config: Pick<Config, 'secrets'>,
  db: Db,
  opts: LoadSecretBoxOptions,
): Promise<SecretBox> {
  const { keyFile } = config.secrets;
  const check = await readSetting(db, KEY_CHECK_SETTING);
  let key: Buffer | null = null;
  let source: string;
  if (config.secrets.key !== undefined) {
    key = parseSecretsKey(config.secrets.key);
    source = 'SECRETS_KEY';
    if (!key) throw new SecretsKeyError('SECRETS_KEY must be 32 bytes: 64 hex characters or base64 (e.g. `openssl rand -base64 32`)');
  } else {
    source = `the key file ${keyFile}`;
    let text = readKeyFile(keyFile);
    if (text === null) {
      if (check !== null) {
        throw new SecretsKeyError(
          `function secrets are stored under a key this process does not have: set SECRETS_KEY to that key ` +
            `(or restore ${keyFile}). Refusing to start functions without their secrets.`,
        );
      }
      if (!opts.generate) {
        throw new SecretsKeyError(
          `no secrets key: set SECRETS_KEY (64 hex characters or base64 of 32 bytes, e.g. \`openssl rand -base64 32\`), ` +
            `or give this process the key file ${keyFile} that \`npm start\` generates`,
        );
      }
      text = createKeyFile(keyFile);
      opts.logger?.info('generated the secrets key', { file: keyFile });
    } else {
      warnIfReadable(keyFile, opts.logger);
    }
    key = parseSecretsKey(text);
    if (!key) throw new SecretsKeyError(`${keyFile} does not hold a secrets key (64 hex characters or base64 of 32 bytes); fix it or set SECRETS_KEY`);
  }
  const box = new SecretBox(key);
  if (check === null) {
    // first use: record the check value (a concurrent first start may win: then verify theirs)
    await db.knex('platform_settings')
      .insert({ name: KEY_CHECK_SETTING, value: box.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK_CONTEXT) })
      .onConflict('name')
      .ignore();
  }
  const stored = check ?? (await readSetting(db, KEY_CHECK_SETTING));
  let ok = false;
  try {
    ok = stored !== null && box.open(stored, KEY_CHECK_CONTEXT) === KEY_CHECK_PLAINTEXT;
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new SecretsKeyError(
      `the secrets key (from ${source}) is not the key this platform's secrets were sealed with: ` +
        `set SECRETS_KEY to the original key. Refusing to start functions without their secrets.`,
    );
  }
  return box;
}

async function readSetting(db: Db, name: string): Promise<string | null> {
  const row = await db.knex('platform_settings').where({ name }).first('value');
  return row ? String(row.value) : null;
}

function readKeyFile(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new SecretsKeyError(`cannot read the secrets key file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** Creates the key file (0600) unless another process just did; returns what the file holds. */
function createKeyFile(file: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  try {
    fs.writeFileSync(file, generateSecretsKey() + '\n', { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return fs.readFileSync(file, 'utf8');
}

function warnIfReadable(file: string, logger?: Logger): void {
  try {
    if ((fs.statSync(file).mode & 0o077) !== 0) {
      logger?.warn('the secrets key file is readable by other users: chmod 600 it', { file });
    }
  } catch {
    // stat failing after a successful read: nothing worth reporting
  }
}
