// The saved login: $XDG_CONFIG_HOME/containerpub/credentials.json (else ~/.config/…), mode 0600 in
// a 0700 directory, because it holds a bearer token. Environment variables override it:
// URL: --url > CONTAINERPUB_URL > the file > http://127.0.0.1:8080;
// token: CONTAINERPUB_TOKEN > the file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CliError } from './errors.ts';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export interface SavedCredentials {
  url: string;
  token: string;
  email?: string;
  userId?: string;
  savedAt?: string;
}

export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'containerpub');
}

export function credentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(configDir(env), 'credentials.json');
}

export function readCredentials(env: NodeJS.ProcessEnv = process.env): SavedCredentials | null {
  const file = credentialsPath(env);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as Partial<SavedCredentials>;
    if (typeof parsed.token !== 'string' || typeof parsed.url !== 'string') throw new Error('missing "url" or "token"');
    return parsed as SavedCredentials;
  } catch (err) {
    throw new CliError(`${file} is damaged (${(err as Error).message}): run "containerpub login" again`);
  }
}

/** Written to a temporary file (already 0600) and renamed, so the token is never readable by others. */
export function saveCredentials(creds: SavedCredentials, env: NodeJS.ProcessEnv = process.env): string {
  const dir = configDir(env);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  const file = path.join(dir, 'credentials.json');
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
  return file;
}

/** Deletes the saved login; false when there was none. */
export function removeCredentials(env: NodeJS.ProcessEnv = process.env): boolean {
  try {
    fs.unlinkSync(credentialsPath(env));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new CliError(`cannot remove ${credentialsPath(env)}: ${(err as Error).message}`);
  }
}

export interface Connection {
  url: string;
  token: string | null;
  /** where the token came from, for messages */
  tokenSource: 'env' | 'file' | null;
}

export function normalizeUrl(raw: string, origin: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError(`${origin} "${raw}" is not a URL (expected e.g. ${DEFAULT_URL})`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new CliError(`${origin} "${raw}" must be an http:// or https:// URL`);
  }
  return u.toString().replace(/\/+$/, '');
}

export function resolveConnection(flagUrl: string | undefined, env: NodeJS.ProcessEnv = process.env): Connection {
  const saved = readCredentials(env);
  const url = flagUrl
    ? normalizeUrl(flagUrl, '--url')
    : env.CONTAINERPUB_URL
      ? normalizeUrl(env.CONTAINERPUB_URL, 'CONTAINERPUB_URL')
      : saved?.url
        ? normalizeUrl(saved.url, `"url" in ${credentialsPath(env)}`)
        : DEFAULT_URL;
  if (env.CONTAINERPUB_TOKEN) return { url, token: env.CONTAINERPUB_TOKEN, tokenSource: 'env' };
  if (saved?.token) return { url, token: saved.token, tokenSource: 'file' };
  return { url, token: null, tokenSource: null };
}
