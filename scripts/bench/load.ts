// HTTP load through autocannon, with every response's latency kept: autocannon's own histogram has
// no p95, and its percentiles are bucketed. A request that fails (non-2xx, a connection error, a
// timeout) is counted and reported; a benchmark with errors says so.
import fs from 'node:fs';
import autocannon from 'autocannon';
import { summarize, type Stat } from './stats.ts';

/** CPU time (ms) a process has used so far, from /proc (Linux); null where that is not readable. */
export function processCpuMs(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, in clock ticks (USER_HZ, 100 on Linux)
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return null;
  }
}

/**
 * Measures how busy `pid` (the server) and this process (the load generator) were while `work`
 * ran, in cores: 1.0 is one core busy the whole time. What saturates is what bounds the figure.
 */
export async function withCpu<T>(pid: number | undefined, work: () => Promise<T>): Promise<{ value: T; serverCores: number | null; benchCores: number }> {
  const server0 = pid === undefined ? null : processCpuMs(pid);
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await work();
  const wall = performance.now() - t0;
  const server1 = pid === undefined ? null : processCpuMs(pid);
  const own = process.cpuUsage(own0);
  return {
    value,
    serverCores: server0 === null || server1 === null ? null : round2((server1 - server0) / wall),
    benchCores: round2((own.user + own.system) / 1000 / wall),
  };
}

const round2 = (v: number) => Math.round(v * 100) / 100;

export interface LoadOptions {
  url: string;
  path?: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** cycled in order by every connection (autocannon's `requests`) */
  requests?: autocannon.Request[];
  connections: number;
  /** total requests, spread over the connections */
  amount: number;
  /** seconds before a request counts as timed out */
  timeoutS?: number;
  /** the server's pid: its CPU use is reported with the result */
  serverPid?: number;
  /**
   * requests sent first and not recorded (the server's code paths compiled, its pools filled):
   * the figures are for a warm server. Any failure among them fails the measurement.
   */
  warmup?: number;
}

export interface LoadResult {
  /** per-response latency in ms, every response (2xx or not) */
  latencies: number[];
  stat: Stat;
  /** responses by status code */
  statuses: Record<string, number>;
  non2xx: number;
  /** connection errors and timeouts */
  transportErrors: number;
  /** first response sent → last response received, ms */
  wallMs: number;
  /** responses per second over wallMs */
  rps: number;
  /** cores the server process and the load generator kept busy (null: not measurable here) */
  cpu: { serverCores: number | null; benchCores: number };
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  if (opts.warmup) {
    const warm = await runLoad({ ...opts, amount: opts.warmup, connections: Math.min(opts.connections, opts.warmup), warmup: 0 });
    if (warm.non2xx + warm.transportErrors > 0) {
      throw new Error(`warm-up of ${opts.path ?? '/'} failed: ${JSON.stringify(warm.statuses)}, ${warm.transportErrors} connection errors`);
    }
  }
  if (opts.amount < opts.connections) throw new Error(`amount ${opts.amount} is below connections ${opts.connections}`);
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let transportErrors = 0;
  let lastResponse = 0;
  const started = performance.now();
  const measured = await withCpu(opts.serverPid, () => new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: opts.url + (opts.path ?? ''),
        method: opts.method ?? 'GET',
        headers: opts.headers,
        body: opts.body,
        requests: opts.requests,
        connections: opts.connections,
        amount: opts.amount,
        timeout: opts.timeoutS ?? 60,
        // how often autocannon samples (and notices it is done): its 1 s default ends every run a second late
        sampleInt: 20,
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      latencies.push(responseTime);
      statuses[String(statusCode)] = (statuses[String(statusCode)] ?? 0) + 1;
      lastResponse = performance.now();
    });
    instance.on('reqError', () => {
      transportErrors++;
    });
  }));
  const result = measured.value;
  const non2xx = Object.entries(statuses)
    .filter(([code]) => !code.startsWith('2'))
    .reduce((acc, [, count]) => acc + count, 0);
  if (latencies.length === 0) throw new Error(`no response at all from ${opts.url}${opts.path ?? ''} (${result.errors} errors)`);
  const wallMs = (lastResponse || performance.now()) - started;
  return {
    latencies,
    stat: summarize(latencies),
    statuses,
    non2xx,
    transportErrors: Math.max(transportErrors, result.errors),
    wallMs,
    rps: latencies.length / (wallMs / 1000),
    cpu: { serverCores: measured.serverCores, benchCores: measured.benchCores },
  };
}

/** Several runs of one measurement (taken in chunks, interleaved with its floor) as one result. */
export function mergeLoads(runs: LoadResult[]): LoadResult {
  if (runs.length === 0) throw new Error('no load to merge');
  const latencies = runs.flatMap((r) => r.latencies);
  const statuses: Record<string, number> = {};
  for (const r of runs) for (const [code, count] of Object.entries(r.statuses)) statuses[code] = (statuses[code] ?? 0) + count;
  const wallMs = runs.reduce((acc, r) => acc + r.wallMs, 0);
  return {
    latencies,
    stat: summarize(latencies),
    statuses,
    non2xx: runs.reduce((acc, r) => acc + r.non2xx, 0),
    transportErrors: runs.reduce((acc, r) => acc + r.transportErrors, 0),
    wallMs,
    rps: latencies.length / (wallMs / 1000),
    cpu: {
      serverCores: runs.some((r) => r.cpu.serverCores === null)
        ? null
        : round2(runs.reduce((acc, r) => acc + r.cpu.serverCores! * r.wallMs, 0) / wallMs),
      benchCores: round2(runs.reduce((acc, r) => acc + r.cpu.benchCores * r.wallMs, 0) / wallMs),
    },
  };
}

/**
 * Warm-up that lasts until the server has settled: `round` (loads, not recorded) again and again
 * until the rate of its first load stops climbing, i.e. each of the last two rounds is within `tolerance` of the one
 * before it, or `maxRounds` have run. A fresh server needs far more than a fixed handful of
 * requests: measured on the 2-core machine of docs/benchmarks.md, its CPU per /deploy fell by half
 * over its first ~10,000 and per /healthz by 3.5x over its first 16,000, and a new server process
 * on the same database started slow again (so it is the process, not the data). A figure taken on
 * that slope measures how new the process is. The rates are returned for the report.
 * `minRounds`: rounds run before the rate may count as settled. Rounds are short and the machine
 * noisy, so three rounds within 10 % of each other can come while the rate is still climbing: the
 * deploy scenario on PostgreSQL stopped after 5 rounds (964 → 1,791 req/s) and measured 1,799,
 * while the same server kept climbing to ~2,900 over its first 15,000 (docs/benchmarks.md).
 */
export async function warmUntilSettled(
  round: () => Promise<LoadResult[]>,
  opts: { maxRounds: number; minRounds?: number; tolerance?: number },
): Promise<number[]> {
  const tolerance = opts.tolerance ?? 0.1;
  const rates: number[] = [];
  const settled = () => {
    const [a, b, c] = rates.slice(-3);
    return rates.length >= (opts.minRounds ?? 0) && c !== undefined && Math.abs(b! - a!) <= tolerance * a! && Math.abs(c - b!) <= tolerance * b!;
  };
  while (rates.length < opts.maxRounds && !settled()) {
    const loads = await round();
    for (const load of loads) {
      if (load.non2xx + load.transportErrors > 0) throw new Error(`warm-up failed: ${JSON.stringify(load.statuses)}, ${load.transportErrors} connection errors`);
    }
    rates.push(Math.round(loads[0]!.rps));
  }
  return rates;
}
