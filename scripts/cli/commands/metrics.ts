// metrics <name>: requests, errors and latency per version over the last minutes; with --version,
// that version's figures minute by minute too.
import { ApiError, CliError } from '../errors.ts';
import { formatTime, table } from '../format.ts';
import { intFlag, type Command } from './command.ts';
import type { VersionMetrics } from '../../../shared/domain/metrics.ts';

// The answer of GET /api/functions/:id/metrics, typed by the domain module that makes it.
interface FunctionMetrics {
  minutes: number;
  versions: VersionMetrics[];
}
const ms = (n: number | null) => (n === null ? '-' : `${n} ms`);
const percent = (rate: number) => `${(rate * 100).toFixed(rate === 0 || rate === 1 ? 0 : 1)}%`;

export const metrics: Command = {
  name: 'metrics',
  summary: "show a function's requests, errors and latency per version",
  usage: 'metrics <name> [--version <n>] [--minutes <m>]',
  examples: [
    "metrics hello",
    "metrics hello --version 4 --minutes 15 --json",
  ],
  details:
    'Errors are invocations that threw, timed out or crashed, and answers with a 5xx status.\n' +
    'Latencies are estimated from a histogram; figures lag the invocations by up to METRICS_FLUSH_MS.',
  options: {
    version: { type: 'string', value: 'n', description: 'only this version, with its figures minute by minute' },
    minutes: { type: 'string', value: 'm', description: 'the last m minutes (default 60, at most 1440)' },
  },
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const version = intFlag(ctx.flags, 'version');
    const minutes = intFlag(ctx.flags, 'minutes', { max: 1440 });
    const api = ctx.api();
    const fn = await api.functionNamed(name);
    let answer: FunctionMetrics;
    try {
      answer = await api.request<FunctionMetrics>('GET', `/api/functions/${fn.id}/metrics`, { query: { version, minutes } });
    } catch (err) {
      // the function was just found: a route-level 404 is an API older than this CLI
      if (err instanceof ApiError && err.code === 'not_found') {
        throw new CliError(`the API at ${api.baseUrl} does not keep metrics (it is older than this CLI)`);
      }
      throw err;
    }
    ctx.out.data(answer);
    if (ctx.out.json) return 0;
    const span = `the last ${answer.minutes === 1 ? 'minute' : `${answer.minutes} minutes`}`;
    if (answer.versions.length === 0) {
      ctx.out.info(`no invocations of ${name} in ${span}`);
      return 0;
    }
    ctx.out.info(`${name}, ${span}:`);
    ctx.out.info(
      table(
        ['VERSION', 'REQUESTS', 'ERRORS', 'ERROR RATE', 'TIMEOUTS', 'CRASHES', 'P50', 'P99', 'AVG'],
        answer.versions.map((v) => [
          `v${v.version}`,
          String(v.totals.requests),
          String(v.totals.errors),
          percent(v.totals.errorRate),
          String(v.totals.timeouts),
          String(v.totals.crashes),
          ms(v.totals.p50Ms),
          ms(v.totals.p99Ms),
          ms(v.totals.avgMs),
        ]),
      ),
    );
    if (version !== undefined) {
      const series = answer.versions[0]?.series ?? [];
      ctx.out.info('');
      if (series.length === 0) ctx.out.info(`(no invocations of v${version} in ${span})`);
      else {
        ctx.out.info(
          table(
            ['MINUTE (UTC)', 'REQUESTS', 'ERRORS', 'TIMEOUTS', 'CRASHES', 'P50', 'P99'],
            series.map((m) => [formatTime(m.minute).slice(0, 16), String(m.requests), String(m.errors), String(m.timeouts), String(m.crashes), ms(m.p50Ms), ms(m.p99Ms)]),
          ),
        );
      }
    }
    return 0;
  },
};
