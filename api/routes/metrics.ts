// GET /api/functions/:id/metrics[?version=N&minutes=M] — requests, errors, timeouts, crashes and
// latency per version over the last M minutes (default 60), totals and per minute. Figures are
// written by each serving process every METRICS_FLUSH_MS, so the last second or so may be missing.
import { z } from 'zod';
import { findDeploymentByVersion } from '../../shared/domain/deployments.ts';
import { functionMetrics } from '../../shared/domain/metrics.ts';
import { num } from '../../shared/db/dialect.ts';
import { errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, parseWith, positiveIntString } from '../http/validation.ts';

export const metricsQuery = z.object({
  version: positiveIntString.optional(),
  // a day of minutes at most: the per-minute series stays a reasonable answer
  minutes: positiveIntString.pipe(z.number().max(1440, 'must be at most 1440')).optional(),
});

export function register(app: App, p: Platform): void {
  app.get('/api/functions/:id/metrics', async (c) => {
    const id = functionId(c);
    const query = parseWith(metricsQuery, c.req.query());
    const minutes = query.minutes ?? 60;
    let deployment: { id: string; version: number } | undefined;
    if (query.version !== undefined) {
      const dep = await findDeploymentByVersion(p.db.knex, id, query.version);
      if (!dep) throw errors.versionNotFound(query.version);
      deployment = { id: dep.id, version: num(dep.version) };
    }
    return c.json({ minutes, versions: await functionMetrics(p.db, id, { minutes, deployment }) });
  });
}
