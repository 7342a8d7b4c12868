// What every command declares: its options (for node:util parseArgs and for --help), how many
// positionals it takes, and what it does. main.ts parses, builds the context and dispatches.
import path from 'node:path';
import { ApiClient } from '../api-client.ts';
import { resolveConnection, type Connection } from '../credentials.ts';
import { UsageError } from '../errors.ts';
import type { Output } from '../output.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** shown in --help as `--name <value>` */
  value?: string;
  description: string;
}

export interface Command {
  name: string;
  summary: string;
  /** after "containerpub ": e.g. "deploy <dir> --name <name> [options]" */
  usage: string;
  /** a longer explanation for --help */
  details?: string;
  /** shown under "Examples:" in --help: whole command lines, without the "containerpub " */
  examples: string[];
  options: Record<string, OptionSpec>;
  /** `variadic`: the last name takes any number of words (KEY=VALUE lists) */
  positionals: { names: string[]; min: number; variadic?: boolean };
  run(ctx: CommandContext): Promise<number>;
}

export type Flags = Record<string, string | boolean | undefined>;

export interface CommandContext {
  out: Output;
  flags: Flags;
  positionals: string[];
  env: NodeJS.ProcessEnv;
  /** the API URL and token, resolved from --url, the environment and the saved login */
  connection(): Connection;
  /** a client for the resolved URL, carrying the token (requests fail with "not logged in" without one) */
  api(): ApiClient;
  /** the directory the user typed the command in: INIT_CWD under `npm run`, else the working directory */
  cwd: string;
  /** `p` resolved against `cwd` (a path argument means what it means where the user typed it) */
  resolvePath(p: string): string;
}

/**
 * `npm run cli -- deploy ./fn` runs with the package's root as its working directory; npm keeps the
 * directory the command was typed in as INIT_CWD.
 */
export function invocationDir(env: NodeJS.ProcessEnv): string {
  const init = env.INIT_CWD;
  return init && path.isAbsolute(init) ? init : process.cwd();
}

export function createContext(out: Output, flags: Flags, positionals: string[], env: NodeJS.ProcessEnv): CommandContext {
  let connection: Connection | undefined;
  const ctx: CommandContext = {
    out,
    flags,
    positionals,
    env,
    connection: () => (connection ??= resolveConnection(stringFlag(flags, 'url'), env)),
    api: () => new ApiClient(ctx.connection().url, ctx.connection().token),
    cwd: invocationDir(env),
    resolvePath: (p) => path.resolve(invocationDir(env), p),
  };
  return ctx;
}

export function stringFlag(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function requiredFlag(flags: Flags, name: string, command: string): string {
  const v = stringFlag(flags, name);
  if (v === undefined || v === '') throw new UsageError(`${command} needs --${name}`);
  return v;
}

/** A flag that must be a positive integer (versions, limits). */
export function intFlag(flags: Flags, name: string, opts: { max?: number } = {}): number | undefined {
  const raw = stringFlag(flags, name);
  if (raw === undefined) return undefined;
  const version = raw.replace(/^v/i, '');
  if (!/^[1-9][0-9]{0,8}$/.test(version)) throw new UsageError(`--${name} must be a positive integer, not "${raw}"`);
  const n = Number(version);
  if (opts.max !== undefined && n > opts.max) throw new UsageError(`--${name} must be at most ${opts.max}`);
  return n;
}

/** A version given as an argument: 3 or v3. */
export function versionArg(raw: string): number {
  const v = raw.replace(/^v/i, '');
  if (!/^[1-9][0-9]{0,8}$/.test(v)) throw new UsageError(`"${raw}" is not a version (e.g. 3 or v3)`);
  return Number(v);
}
