// GET /metrics: the platform's Prometheus metrics (shared/observability/metrics.ts), in the text
// exposition format. With METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`.
import { errors } from '../../shared/errors.ts';
import { bearerMatches } from '../../shared/observability/http.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';

export function register(app: App, p: Platform): void {
  const token = p.config.observability.metricsToken;
  app.get('/metrics', async (c) => {
    if (token && !bearerMatches(c.req.header('authorization'), token)) {
      throw errors.unauthorized('missing or invalid bearer token (METRICS_TOKEN)');
    }
    const { contentType, body } = await p.metrics.exposition();
    return c.body(body, 200, { 'Content-Type': contentType });
  });
}
