// traffic <name> [--to N --percent P [--sticky|--no-sticky] | --clear]: the split between the live
// version and a candidate; promote <name>: the candidate becomes the live version.
import type { FunctionSummary } from '../api-client.ts';
import { UsageError } from '../errors.ts';
import { table } from '../format.ts';
import { intFlag, stringFlag, type Command, type Flags } from './command.ts';

/** --percent: a whole number 0–100 (0 keeps the candidate running without traffic). */
function percentFlag(flags: Flags): number | undefined {
  const raw = stringFlag(flags, 'percent');
  if (raw === undefined) return undefined;
  const v = raw.replace(/%$/, '');
  if (!/^[0-9]{1,3}$/.test(v) || Number(v) > 100) throw new UsageError(`--percent must be a whole number from 0 to 100, not "${raw}"`);
  return Number(v);
}

/** "v4 10% (candidate), v3 90% (live), sticky" */
export function describeSplit(fn: FunctionSummary): string {
  if (fn.traffic.length === 0) return 'no live version: nothing takes traffic';
  const shares = fn.traffic.map((s) => `v${s.version} ${s.percent}% (${s.role})`).join(', ');
  return fn.traffic.length > 1 && fn.sticky ? `${shares}, sticky` : shares;
}

export const traffic: Command = {
  name: 'traffic',
  summary: 'show or set the traffic split between the live version and a candidate',
  usage: 'traffic <name> [--to <version> --percent <p> [--sticky | --no-sticky] | --clear]',
  examples: [
    "traffic hello",
    "traffic hello --to 4 --percent 10 --sticky",
    "traffic hello --clear",
  ],
  details:
    'Without options: who takes the traffic now.\n' +
    '--to N --percent P: version N (built, not the live one) becomes the candidate and takes P % of the\n' +
    'invocations; the live version takes the rest. Set it again to change the share.\n' +
    '--sticky: a caller sending the same X-Traffic-Key header (or the cp_traffic cookie the endpoint sets)\n' +
    'always lands on the same version while the split is unchanged; --no-sticky turns that off; neither\n' +
    'keeps the current setting.\n' +
    '--clear: no candidate; the live version takes everything. "containerpub promote" makes the candidate live.\n' +
    'Refused while a canary runs (the canary moves the split).',
  options: {
    to: { type: 'string', value: 'version', description: 'the candidate version' },
    percent: { type: 'string', value: 'p', description: 'its share of the traffic, 0–100 (with --to)' },
    sticky: { type: 'boolean', description: 'keep each caller (X-Traffic-Key or cookie) on one version' },
    'no-sticky': { type: 'boolean', description: 'split every request anew' },
    clear: { type: 'boolean', description: 'remove the candidate: the live version takes all the traffic' },
  },
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const version = intFlag(ctx.flags, 'to');
    const percent = percentFlag(ctx.flags);
    const clear = ctx.flags.clear === true;
    const sticky = ctx.flags.sticky === true ? true : ctx.flags['no-sticky'] === true ? false : undefined;
    if (ctx.flags.sticky === true && ctx.flags['no-sticky'] === true) throw new UsageError('--sticky or --no-sticky, not both');
    if (clear && (version !== undefined || percent !== undefined || sticky !== undefined)) {
      throw new UsageError('--clear takes no --to, --percent or --sticky');
    }
    if (version !== undefined && percent === undefined) throw new UsageError('--to needs --percent <p> (0–100)');
    if (percent !== undefined && version === undefined) throw new UsageError('--percent needs --to <version>');
    if (sticky !== undefined && version === undefined) throw new UsageError(`--${sticky ? '' : 'no-'}sticky goes with --to and --percent`);

    const api = ctx.api();
    const fn = await api.functionNamed(name);
    if (clear) {
      const after = await api.clearTraffic(fn.id);
      ctx.out.data({ name, traffic: after.traffic, sticky: after.sticky });
      const had = fn.traffic.find((s) => s.role === 'candidate');
      ctx.out.info(`✔ ${name}: ${had ? `candidate v${had.version} removed; ` : 'no candidate; '}${describeSplit(after)}`);
      return 0;
    }
    if (version !== undefined) {
      const after = await api.setTraffic(fn.id, { version, percent: percent! }, sticky);
      ctx.out.data({ name, traffic: after.traffic, sticky: after.sticky });
      ctx.out.info(`✔ ${name}: ${describeSplit(after)}`);
      return 0;
    }
    ctx.out.data({ name, traffic: fn.traffic, sticky: fn.sticky });
    if (ctx.out.json) return 0;
    if (fn.traffic.length === 0) {
      ctx.out.info(`${name}: ${describeSplit(fn)}`);
      return 0;
    }
    ctx.out.info(table(['VERSION', 'PERCENT', 'ROLE'], fn.traffic.map((s) => [`v${s.version}`, `${s.percent}%`, s.role])));
    if (fn.traffic.length > 1) ctx.out.info(fn.sticky ? 'sticky: a traffic key keeps its version' : 'not sticky: each request is split anew');
    return 0;
  },
};

export const promote: Command = {
  name: 'promote',
  summary: 'make the candidate the live version (the split ends)',
  usage: 'promote <name>',
  examples: [
    "promote hello",
    "promote hello --json",
  ],
  details: 'The candidate set with "containerpub traffic" becomes the live version in one step; a running canary ends as promoted.',
  options: {},
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const api = ctx.api();
    const fn = await api.functionNamed(name);
    const result = await api.promote(fn.id);
    ctx.out.data({ name, ...result });
    const was = result.previousVersion === null ? 'no version' : `v${result.previousVersion}`;
    ctx.out.info(`✔ ${name} v${result.version} is live (was ${was}); it takes all the traffic`);
    return 0;
  },
};
