// A function's configuration from the command line. Every change (env set/unset, secrets set/unset,
// config KEY=VALUE) is a new version running the live version's code: no rebuild, live once an
// instance with the new configuration is ready, undone by a rollback.
//
//   env ls|set KEY=VALUE…|unset KEY… <name>
//   secrets ls|set NAME|unset NAME… <name>     values from stdin or a hidden prompt, never argv
//   config <name> [memory=256 timeout=5s min=1 max=4 concurrency=2 network=outbound]
//   diff <name> <a> <b>
//
// A secret's value is never printed, never put in an error message, and never read from argv (it
// would stay in the shell history and be visible to other users in the process list).
import { FUNCTION_NAME_PATTERN } from '../../../shared/domain/model.ts';
import type { ApiClient, ConfigPatch, ConfigView, VersionComparison } from '../api-client.ts';
import { followBuild, BUILD_LOG_TAIL_LINES, tail } from '../deploy.ts';
import { UsageError } from '../errors.ts';
import { CONFIG_KEYS_HELP, formatDuration, parseConfigArgs } from '../config-args.ts';
import { shortSha, table } from '../format.ts';
import type { Output } from '../output.ts';
import { askSecret } from '../prompt.ts';
import { intFlag, versionArg, type Command, type CommandContext, type OptionSpec } from './command.ts';

const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

const changeOptions: Record<string, OptionSpec> = {
  'no-wait': { type: 'boolean', description: 'return once the new version is requested, without following it' },
  timeout: { type: 'string', value: 'seconds', description: 'stop following the new version after this long (default 600)' },
};

/**
 * Splits `words` into the function name (the one word that is a function name: lower case, no "=")
 * and the rest, in order. Variable names are upper case, so the two never mix up.
 */
function splitName(words: string[], command: string): { name: string; rest: string[] } {
  const names = words.filter((w) => !w.includes('=') && FUNCTION_NAME_PATTERN.test(w));
  if (names.length === 0) throw new UsageError(`${command} needs <name>, the function`);
  if (names.length > 1) {
    throw new UsageError(`${command}: which function, ${names.map((n) => `"${n}"`).join(' or ')}? (variable names are upper case: A-Z, 0-9, _)`);
  }
  return { name: names[0]!, rest: words.filter((w) => w !== names[0]) };
}

function checkVariableName(name: string, what: 'variable' | 'secret'): void {
  if (!ENV_NAME.test(name)) throw new UsageError(`"${name}" is not a ${what} name: use A-Z, 0-9 and _, not starting with a digit`);
}

/** What a configuration change printed and returned. */
export interface ConfigChangeOutcome {
  name: string;
  functionId: string;
  version: number;
  deploymentId: string;
  status: string;
  live: boolean;
  error: string | null;
  buildLogTail: string[];
}

/** Sends the patch (a new version), then follows it until it is live or failed, unless --no-wait. */
async function changeConfig(ctx: CommandContext, api: ApiClient, fn: { id: string; name: string }, patch: ConfigPatch, what: string): Promise<ConfigChangeOutcome> {
  const requested = await api.changeConfig(fn.id, patch);
  const label = `${fn.name} v${requested.version}`;
  ctx.out.info(`${label}: ${what} (configuration change: the live code, no rebuild)`);
  const outcome: ConfigChangeOutcome = {
    name: fn.name,
    functionId: fn.id,
    version: requested.version,
    deploymentId: requested.deploymentId,
    status: requested.status,
    live: false,
    error: null,
    buildLogTail: [],
  };
  if (ctx.flags['no-wait'] === true) return outcome;
  const timeoutS = intFlag(ctx.flags, 'timeout') ?? 600;
  const done = await followBuild(api, fn.id, requested.version, {
    name: fn.name,
    out: ctx.out,
    timeoutMs: timeoutS * 1000,
    label,
    lastStatus: requested.status,
  });
  outcome.status = done.status;
  outcome.live = done.isActive;
  if (done.status === 'failed') {
    outcome.error = done.error;
    outcome.buildLogTail = tail(done.buildLogs, BUILD_LOG_TAIL_LINES);
  }
  return outcome;
}

function reportChange(out: Output, o: ConfigChangeOutcome): number {
  const label = `${o.name} v${o.version}`;
  out.data(o);
  if (o.status === 'failed') {
    out.error(`✘ ${label} failed: ${o.error ?? 'its instance did not get ready'}`);
    for (const line of o.buildLogTail) out.error(`  │ ${line}`);
    return 1;
  }
  if (o.status !== 'active') out.info(`${label} is ${o.status}; follow it with "containerpub history ${o.name}"`);
  else if (o.live) out.info(`✔ ${label} is live`);
  else out.info(`✔ ${label} is ready, but another version is live (a newer deploy or rollback)`);
  return 0;
}

// ---------------------------------------------------------------------------------------------
export const env: Command = {
  name: 'env',
  summary: "list, set or unset a function's environment variables",
  usage: 'env ls <name> | env set KEY=VALUE… <name> | env unset KEY… <name>',
  examples: [
    "env ls hello",
    "env set LOG_LEVEL=debug REGION=eu hello",
    "env unset REGION hello --json",
  ],
  details:
    'set and unset make a new version with the live code and the changed variables (no rebuild);\n' +
    'it goes live once an instance with them is ready. A rollback brings the earlier variables back.\n' +
    'Names are A-Z, 0-9 and _ (CONTAINERPUB_* is reserved). For passwords and keys use "containerpub secrets".',
  options: changeOptions,
  positionals: { names: ['ls|set|unset', 'args'], min: 1, variadic: true },
  async run(ctx) {
    const [action, ...words] = ctx.positionals;
    if (!['ls', 'set', 'unset'].includes(action!)) throw new UsageError(`unknown env action "${action}" (ls, set or unset)`);
    const { name, rest } = splitName(words, `env ${action}`);
    const api = ctx.api();
    if (action === 'ls') {
      if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
      const fn = await api.functionNamed(name);
      const config = await api.getConfig(fn.id);
      ctx.out.data({ name, version: config.version, env: config.env });
      if (ctx.out.json) return 0;
      const entries = Object.entries(config.env).sort(([a], [b]) => (a < b ? -1 : 1));
      if (entries.length === 0) ctx.out.info(`${name} has no environment variables (set one with "containerpub env set KEY=VALUE ${name}")`);
      else ctx.out.info(table(['NAME', 'VALUE'], entries.map(([k, v]) => [k, v])));
      return 0;
    }
    if (rest.length === 0) throw new UsageError(action === 'set' ? 'env set needs KEY=VALUE' : 'env unset needs KEY');
    const patch: Record<string, string | null> = {};
    for (const word of rest) {
      if (action === 'set') {
        const eq = word.indexOf('=');
        if (eq <= 0) throw new UsageError(`"${word}" is not KEY=VALUE`);
        const key = word.slice(0, eq);
        checkVariableName(key, 'variable');
        patch[key] = word.slice(eq + 1);
      } else {
        if (word.includes('=')) throw new UsageError(`env unset takes names, not "${word}"`);
        checkVariableName(word, 'variable');
        patch[word] = null;
      }
    }
    const fn = await api.functionNamed(name);
    const keys = Object.keys(patch).join(', ');
    const outcome = await changeConfig(ctx, api, fn, { env: patch }, action === 'set' ? `setting ${keys}` : `removing ${keys}`);
    return reportChange(ctx.out, outcome);
  },
};

// ---------------------------------------------------------------------------------------------
/** The whole of stdin (a pipe or a file), without one trailing newline. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export const secrets: Command = {
  name: 'secrets',
  summary: "list, set or unset a function's secrets (values never shown)",
  usage: 'secrets ls <name> | secrets set NAME <name> | secrets unset NAME… <name>',
  examples: [
    "secrets ls hello",
    "printf %s \"$DB_PASSWORD\" | containerpub secrets set DB_PASSWORD hello",
    "secrets unset DB_PASSWORD hello",
  ],
  details:
    'set reads the value from stdin when it is not a terminal (printf %s "$TOKEN" | containerpub secrets set TOKEN api),\n' +
    'else asks for it without echo. Values are never taken from the command line: they would stay in the\n' +
    'shell history. Secrets are encrypted at rest and reach only the instance environment; ls shows names.\n' +
    'set and unset make a new version with the live code (no rebuild), like "containerpub env".',
  options: changeOptions,
  positionals: { names: ['ls|set|unset', 'args'], min: 1, variadic: true },
  async run(ctx) {
    const [action, ...words] = ctx.positionals;
    if (!['ls', 'set', 'unset'].includes(action!)) throw new UsageError(`unknown secrets action "${action}" (ls, set or unset)`);
    // Before anything else: a value on the command line is refused without being repeated.
    const withValue = words.find((w) => w.includes('='));
    if (withValue !== undefined) {
      throw new UsageError(
        `secret values are never taken from the command line (they would stay in the shell history): ` +
          `give "${withValue.slice(0, withValue.indexOf('='))}" without "=…" and pipe the value on stdin, or type it at the prompt`,
      );
    }
    const { name, rest } = splitName(words, `secrets ${action}`);
    const api = ctx.api();
    if (action === 'ls') {
      if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
      const fn = await api.functionNamed(name);
      const config = await api.getConfig(fn.id);
      ctx.out.data({ name, version: config.version, secrets: config.secrets });
      if (ctx.out.json) return 0;
      if (config.secrets.length === 0) ctx.out.info(`${name} has no secrets (set one with "containerpub secrets set NAME ${name}")`);
      else ctx.out.info(table(['NAME'], config.secrets.map((s) => [s])));
      return 0;
    }
    if (rest.length === 0) throw new UsageError(`secrets ${action} needs NAME`);
    for (const word of rest) checkVariableName(word, 'secret');
    if (action === 'set' && rest.length > 1) throw new UsageError('secrets set takes one NAME at a time (its value comes from stdin or the prompt)');
    // Resolve the function first: no prompt for a value that could not be stored anyway.
    const fn = await api.functionNamed(name);
    const patch: Record<string, string | null> = {};
    if (action === 'set') {
      const secretName = rest[0]!;
      const value = process.stdin.isTTY ? await askSecret(`value of ${secretName} (not shown): `, 'stdin') : await readStdin();
      if (value === '') throw new UsageError(`no value for ${secretName}: pipe it on stdin, or type it at the prompt`);
      patch[secretName] = value;
    } else {
      for (const word of rest) patch[word] = null;
    }
    const keys = Object.keys(patch).join(', ');
    const outcome = await changeConfig(ctx, api, fn, { secrets: patch }, action === 'set' ? `setting the secret ${keys}` : `removing the secret${rest.length > 1 ? 's' : ''} ${keys}`);
    return reportChange(ctx.out, outcome);
  },
};

// ---------------------------------------------------------------------------------------------
function settingsRows(c: ConfigView): string[][] {
  return [
    ['memory', `${c.memoryMb} MiB`],
    ['timeout', formatDuration(c.timeoutMs)],
    ['min instances', String(c.minInstances)],
    ['max instances', String(c.maxInstances)],
    ['concurrency', String(c.concurrency)],
    ['network', c.network],
    ['env', Object.keys(c.env).length === 0 ? '-' : Object.keys(c.env).sort().join(', ')],
    ['secrets', c.secrets.length === 0 ? '-' : c.secrets.join(', ')],
  ];
}

export const config: Command = {
  name: 'config',
  summary: "show or change a function's limits and network",
  usage: 'config <name> [memory=256 timeout=5s min=1 max=4 concurrency=2 network=outbound]',
  examples: [
    "config hello",
    "config hello memory=512 timeout=10s",
    "config hello --json",
  ],
  details:
    'Without settings: prints the live version\'s configuration (secrets by name only).\n' +
    `With settings: a new version with the live code and these settings (no rebuild). ${CONFIG_KEYS_HELP}`,
  options: changeOptions,
  positionals: { names: ['name', 'KEY=VALUE'], min: 1, variadic: true },
  async run(ctx) {
    const [name, ...words] = ctx.positionals;
    if (!FUNCTION_NAME_PATTERN.test(name!)) throw new UsageError(`"${name}" is not a function name (config <name> KEY=VALUE…)`);
    const patch = parseConfigArgs(words);
    const api = ctx.api();
    const fn = await api.functionNamed(name!);
    if (words.length === 0) {
      const current = await api.getConfig(fn.id);
      ctx.out.data({ name, ...current });
      if (ctx.out.json) return 0;
      ctx.out.info(`${name}${current.version === null ? ' (no version yet: platform defaults)' : ` v${current.version}`}`);
      ctx.out.info(table(['SETTING', 'VALUE'], settingsRows(current)));
      return 0;
    }
    const what = words.join(' ');
    const outcome = await changeConfig(ctx, api, fn, patch, `setting ${what}`);
    return reportChange(ctx.out, outcome);
  },
};

// ---------------------------------------------------------------------------------------------
const show = (v: string | number) => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/** The lines of a comparison: + added, - removed, ~ changed; secrets only by name. */
export function describeComparison(c: VersionComparison): string[] {
  const lines: string[] = [];
  const [shaA, shaB] = c.code.sha256;
  lines.push(c.code.changed ? `code: changed (${shortSha(shaA)} → ${shortSha(shaB)})` : `code: unchanged (${shortSha(shaA)})`);
  const isSecret = (k: string) => k.startsWith('secrets.');
  const entries = [
    ...Object.entries(c.config.added).map(([k, v]) => [k, isSecret(k) ? `+ ${k} (secret)` : `+ ${k} = ${show(v)}`]),
    ...Object.entries(c.config.removed).map(([k, v]) => [k, isSecret(k) ? `- ${k} (secret)` : `- ${k} (was ${show(v)})`]),
    ...Object.entries(c.config.changed).map(([k, v]) => [k, isSecret(k) ? `~ ${k} (secret value changed)` : `~ ${k}: ${show(v.from)} → ${show(v.to)}`]),
  ].sort(([a], [b]) => (a! < b! ? -1 : a! > b! ? 1 : 0));
  if (entries.length === 0) lines.push('config: unchanged');
  else lines.push('config:', ...entries.map(([, line]) => `  ${line}`));
  return lines;
}

export const diff: Command = {
  name: 'diff',
  summary: 'show what changed between two versions (code and configuration)',
  usage: 'diff <name> <a> <b>',
  examples: [
    "diff hello 3 4",
    "diff hello v3 v4 --json",
  ],
  details: 'Compares version a with version b: whether the code changed (sha256), and each variable, secret\n(by name only: "secret value changed") and setting added, removed or changed.',
  options: {},
  positionals: { names: ['name', 'a', 'b'], min: 3 },
  async run(ctx) {
    const [name, rawA, rawB] = ctx.positionals;
    const a = versionArg(rawA!);
    const b = versionArg(rawB!);
    const api = ctx.api();
    const fn = await api.functionNamed(name!);
    const comparison = await api.compareVersions(fn.id, a, b);
    ctx.out.data({ name, a, b, ...comparison });
    if (ctx.out.json) return 0;
    ctx.out.info(`${name} v${a} → v${b}`);
    for (const line of describeComparison(comparison)) ctx.out.info(line);
    return 0;
  },
};

