// GET /api/status (any signed-in user): what the platform is made of and whether it is working —
// its version, the database and S3 with their latency, the runtime driver, the runners seen in the
// last minute and the build queue. The CLI's `status` command shows it.
import type { Platform } from '../../shared/platform.ts';
import type { RuntimeDriver } from '../../shared/runtime/types.ts';
import { liveRunners, type RunnerView } from '../../shared/observability/heartbeat.ts';
import { queueSnapshot, type QueueSnapshot } from '../../shared/observability/queue.ts';
import { platformVersion } from '../../shared/observability/version.ts';
import type { App } from '../http/app.ts';
import { checkDatabase, checkStorage } from './health.ts';

export interface StatusBody {
  version: string;
  database: { dialect: 'sqlite' | 'pg'; ok: boolean; latencyMs: number; error?: string };
  storage: { ok: boolean; latencyMs: number; error?: string };
  /** the runtime driver of this API process (what invocations run on); null without one */
  driver: string | null;
  /** runners whose heartbeat is younger than a minute */
  runners: RunnerView[];
  queue: QueueSnapshot;
}

export function register(app: App, p: Platform, opts: { driver?: RuntimeDriver } = {}): void {
  app.get('/api/status', async (c) => {
    const [database, storage] = await Promise.all([checkDatabase(p), checkStorage(p)]);
    // without the database there is nothing to list: say so rather than fail the whole answer
    const [runners, queue] = database.ok
      ? await Promise.all([liveRunners(p.db), queueSnapshot(p.db)])
      : [[], { depth: 0, oldestQueuedAt: null }];
    const body: StatusBody = {
      version: platformVersion(),
      database: { dialect: p.db.dialect, ...database },
      storage,
      driver: opts.driver?.name ?? null,
      runners,
      queue,
    };
    return c.json(body);
  });
}
