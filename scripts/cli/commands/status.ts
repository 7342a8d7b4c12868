// status: the platform's version, database, object storage, runtime driver, runners and build queue
// (GET /api/status).
import { formatAge, table } from '../format.ts';
import type { Command } from './command.ts';

/** GET /api/status as the CLI reads it (fields the API may add are passed through under --json). */
export interface PlatformStatus {
  version: string;
  database: { dialect: string; ok: boolean; latencyMs: number | null };
  storage: { ok: boolean; latencyMs: number | null };
  driver: string | null;
  runners: { id: string; lastSeenAt: string }[];
  queue: { depth: number; oldestQueuedAt: string | null };
}

const health = (d: { ok: boolean; latencyMs: number | null }) => (d.ok ? `ok${d.latencyMs === null ? '' : ` (${d.latencyMs} ms)`}` : 'NOT OK');

export const status: Command = {
  name: 'status',
  summary: "show the platform's version, database, storage, driver, runners and build queue",
  usage: 'status',
  examples: ['status', "status --json | jq '.queue.depth'"],
  details:
    'Runners are those seen in the last minute. Exit code 1 when the database or the storage is not ok,\n' +
    'so `containerpub status` can gate a script.',
  options: {},
  positionals: { names: [], min: 0 },
  async run(ctx) {
    const s = await ctx.api().request<PlatformStatus>('GET', '/api/status');
    ctx.out.data(s);
    const healthy = s.database.ok && s.storage.ok;
    if (ctx.out.json) return healthy ? 0 : 1;
    ctx.out.info(`platform  ${s.version} at ${ctx.connection().url}`);
    ctx.out.info(`database  ${s.database.dialect}: ${health(s.database)}`);
    ctx.out.info(`storage   ${health(s.storage)}`);
    ctx.out.info(`driver    ${s.driver ?? 'none (this API process runs no functions)'}`);
    const oldest = s.queue.oldestQueuedAt ? `, oldest queued ${formatAge(s.queue.oldestQueuedAt)}` : '';
    ctx.out.info(`queue     ${s.queue.depth} build${s.queue.depth === 1 ? '' : 's'} waiting${oldest}`);
    if (s.runners.length === 0) ctx.out.info('runners   none seen in the last minute: builds wait');
    else {
      ctx.out.info(`runners   ${s.runners.length}`);
      ctx.out.info(table(['  RUNNER', 'LAST SEEN'], s.runners.map((r) => [`  ${r.id}`, formatAge(r.lastSeenAt)])));
    }
    return healthy ? 0 : 1;
  },
};
