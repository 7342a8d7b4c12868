// canary <name> --to <version> [--steps … --interval … --max-error-rate … --max-p99 … --min-requests …]:
// start a canary and follow it step by step until it is promoted (exit 0) or rolled back / aborted
// (exit 1). canary <name> --status shows it, --abort ends it. The runner's controller does the
// walking; this command only starts it and polls GET …/canary, so Ctrl-C leaves the canary running.
import type { CanaryView } from '../../../shared/domain/canary.ts';
import { ApiError, CliError, EXIT_FAILURE, EXIT_OK, UsageError } from '../errors.ts';
import type { Output } from '../output.ts';
import { intFlag, stringFlag, type Command, type CommandContext } from './command.ts';
import type { ApiClient } from '../api-client.ts';

/** "30s", "2m", "1h", or a bare number of `bareUnit`s; whole units of `unitMs` only. */
function duration(flag: string, text: string, bareUnit: 'ms' | 's', unitMs: number): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|min|h)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--${flag} must be a duration, e.g. ${bareUnit === 's' ? '30s, 2m or 1h (a bare number is seconds)' : '300ms or 2s (a bare number is milliseconds)'}`);
  const unit = (m[2] ?? bareUnit).toLowerCase();
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 }[unit]!;
  const value = ms / unitMs;
  if (!Number.isInteger(value) || value <= 0) {
    throw new UsageError(`--${flag} must be a positive whole number of ${unitMs === 1000 ? 'seconds' : 'milliseconds'}`);
  }
  return value;
}

/** "0.05" or "5%". */
function rate(text: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*(%)?$/.exec(text.trim());
  if (!m) throw new UsageError('--max-error-rate must be a rate, e.g. 0.05 or 5%');
  return m[2] ? Number(m[1]) / 100 : Number(m[1]);
}

function steps(text: string): number[] {
  const words = text.split(',').map((w) => w.trim().replace(/%$/, ''));
  if (words.some((w) => !/^[0-9]{1,3}$/.test(w))) throw new UsageError('--steps must be percentages separated by commas, e.g. 5,25,50,100');
  return words.map(Number);
}

const pct = (r: number) => `${(r * 100).toFixed(1)} %`;

function figures(w: { requests: number; errors: number; errorRate: number; p99Ms: number | null } | null): string {
  if (!w) return 'no figures yet';
  return `${w.requests} requests, ${w.errors} errors (${pct(w.errorRate)}), p99 ${w.p99Ms === null ? '-' : `${w.p99Ms} ms`}`;
}

function limits(v: CanaryView): string {
  return [
    `error rate ≤ ${pct(v.maxErrorRate)}`,
    ...(v.maxP99Ms !== null ? [`p99 ≤ ${v.maxP99Ms} ms`] : []),
    `≥ ${v.minRequests} requests per step`,
  ].join(', ');
}

const stepOf = (v: CanaryView) => `step ${v.stepIndex + 1}/${v.steps.length} (${v.steps[v.stepIndex]} %)`;

function printStatus(out: Output, name: string, v: CanaryView): void {
  const when =
    v.status === 'running' && v.nextEvaluationAt
      ? `, evaluated ${Date.parse(v.nextEvaluationAt) > Date.now() ? `in ${Math.ceil((Date.parse(v.nextEvaluationAt) - Date.now()) / 1000)} s` : 'as soon as it has enough requests'}`
      : '';
  out.info(`canary of ${name} v${v.version}: ${v.status.replace('_', ' ')}, ${stepOf(v)}${when}`);
  out.info(`  steps:  ${v.steps.map((s) => `${s} %`).join(' → ')}, every ${v.intervalSeconds} s`);
  out.info(`  limits: ${limits(v)}`);
  out.info(`  window: ${figures(v.window)}`);
  if (v.reason) out.info(`  reason: ${v.reason}`);
}

/** GET …/canary, riding out an API that is briefly unreachable (a restart): the canary goes on meanwhile. */
async function poll(api: ApiClient, fnId: string, out: Output): Promise<CanaryView> {
  const giveUpAt = Date.now() + 60_000;
  let told = false;
  for (;;) {
    try {
      return await api.request<CanaryView>('GET', `/api/functions/${fnId}/canary`);
    } catch (err) {
      // an answer from the API (401, 404, …) is final; only a missing answer is worth waiting out
      if (err instanceof ApiError || Date.now() > giveUpAt) throw err;
      if (!told) out.error(`${(err as Error).message}; retrying for up to a minute`);
      told = true;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

async function follow(ctx: CommandContext, api: ApiClient, fnId: string, name: string, first: CanaryView): Promise<number> {
  const out = ctx.out;
  // poll often enough to print each step soon after it happens, without hammering a 1-hour interval
  const pollMs = Math.min(2000, Math.max(200, first.intervalSeconds * 250));
  let shownStep = first.stepIndex;
  let shownWait = -1;
  process.once('SIGINT', () => {
    out.error(`stopped following; the canary goes on (containerpub canary ${name} --status, or --abort)`);
    process.exit(130);
  });
  for (let v = first; ; ) {
    if (v.stepIndex !== shownStep) {
      shownStep = v.stepIndex;
      out.event({ event: 'advanced', canary: v });
      out.info(`→ ${stepOf(v)}: v${v.version} takes ${v.steps[v.stepIndex]} % of the traffic (last step: ${figures(v.lastEvaluation)})`);
    }
    if (v.status === 'running' && v.lastEvaluation?.verdict === 'waiting' && v.lastEvaluation.stepIndex === v.stepIndex && shownWait !== v.stepIndex) {
      shownWait = v.stepIndex;
      out.event({ event: 'waiting', canary: v });
      out.info(`… waiting at ${v.steps[v.stepIndex]} %: ${v.lastEvaluation.requests} of the ${v.minRequests} requests it needs`);
    }
    if (v.status !== 'running') {
      out.event({ event: v.status, canary: v });
      if (v.status === 'promoted') {
        out.info(`✔ ${name} v${v.version} promoted: it is the live version (${v.reason ?? 'all steps passed'})`);
        return EXIT_OK;
      }
      out.error(`✖ ${name} v${v.version} ${v.status === 'rolled_back' ? 'rolled back' : 'canary aborted'}: ${v.reason ?? 'no reason given'}`);
      return EXIT_FAILURE;
    }
    await new Promise((r) => setTimeout(r, pollMs));
    const next = await poll(api, fnId, out);
    if (next.id !== v.id) throw new CliError(`the canary of v${v.version} was replaced by another one (of v${next.version})`);
    v = next;
  }
}

export const canary: Command = {
  name: 'canary',
  summary: 'roll a version out step by step, rolled back automatically when it fails',
  usage: 'canary <name> --to <version> [options] | canary <name> --status | canary <name> --abort',
  examples: [
    "canary hello --to 4",
    "canary hello --to 4 --steps 10,50,100 --interval 30s --max-error-rate 2% --detach",
    "canary hello --status --json",
    "canary hello --abort",
  ],
  details:
    'Starts a canary of --to: it takes the first step\'s share of the traffic, and the runner moves it to the next\n' +
    'step after each interval in which it answered at least --min-requests requests within the limits; after the\n' +
    'last step it becomes the live version. Over a limit it is rolled back at once (the live version takes all the\n' +
    'traffic again). This command prints each step as it happens and exits 0 when the version is promoted, 1 when\n' +
    'it was rolled back or aborted. Ctrl-C stops following; the canary goes on.\n' +
    'With --json, stdout carries one JSON object per line for each change.',
  options: {
    to: { type: 'string', value: 'version', description: 'the version to roll out (built, not live)' },
    steps: { type: 'string', value: 'list', description: 'traffic percentages, ascending (default 5,25,50,100)' },
    interval: { type: 'string', value: 'duration', description: 'how long each step lasts at least, e.g. 30s or 2m (default 60s)' },
    'max-error-rate': { type: 'string', value: 'rate', description: 'roll back above this share of failed requests, e.g. 0.05 or 5% (default 0.05)' },
    'max-p99': { type: 'string', value: 'duration', description: 'roll back above this 99th-percentile latency, e.g. 300ms' },
    'min-requests': { type: 'string', value: 'n', description: 'requests a step needs before it may advance (default 20)' },
    detach: { type: 'boolean', description: 'start it and return without following' },
    status: { type: 'boolean', description: 'show the running (or latest) canary' },
    abort: { type: 'boolean', description: 'abort the running canary: the live version takes all the traffic' },
  },
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals as [string];
    const f = ctx.flags;
    const modes = [f.to !== undefined, f.status === true, f.abort === true].filter(Boolean).length;
    if (modes !== 1) throw new UsageError('canary needs one of --to <version>, --status or --abort');
    const api = ctx.api();

    if (f.status || f.abort) {
      const fn = await api.functionNamed(name);
      const v = await api.request<CanaryView>(f.abort ? 'DELETE' : 'GET', `/api/functions/${fn.id}/canary`);
      ctx.out.data(v);
      if (f.abort) ctx.out.info(`✔ canary of ${name} v${v.version} aborted: v${v.version} takes no traffic`);
      else printStatus(ctx.out, name, v);
      return EXIT_OK;
    }

    const version = intFlag(f, 'to');
    const body = {
      version,
      ...(f.steps !== undefined ? { steps: steps(stringFlag(f, 'steps')!) } : {}),
      ...(f.interval !== undefined ? { intervalSeconds: duration('interval', stringFlag(f, 'interval')!, 's', 1000) } : {}),
      ...(f['max-error-rate'] !== undefined ? { maxErrorRate: rate(stringFlag(f, 'max-error-rate')!) } : {}),
      ...(f['max-p99'] !== undefined ? { maxP99Ms: duration('max-p99', stringFlag(f, 'max-p99')!, 'ms', 1) } : {}),
      ...(f['min-requests'] !== undefined ? { minRequests: intFlag(f, 'min-requests') } : {}),
    };
    const fn = await api.functionNamed(name);
    const started = await api.request<CanaryView>('POST', `/api/functions/${fn.id}/canary`, { json: body });
    ctx.out.event({ event: 'started', canary: started });
    ctx.out.info(
      `▶ canary of ${name} v${started.version} started: ${started.steps.map((s) => `${s} %`).join(' → ')}, ` +
        `every ${started.intervalSeconds} s (${limits(started)})`,
    );
    ctx.out.info(`→ ${stepOf(started)}: v${started.version} takes ${started.steps[0]} % of the traffic`);
    if (f.detach) return EXIT_OK;
    return follow(ctx, api, fn.id, name, started);
  },
};
