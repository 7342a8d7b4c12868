// GET /api/functions/:id/logs — the function's event log, newest first.
import { z } from 'zod';
import { listEvents } from '../../shared/domain/events.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, parseWith, positiveIntString } from '../http/validation.ts';

export const logsQuery = z.object({
  limit: positiveIntString.pipe(z.number().max(1000, 'must be at most 1000')).optional(),
  version: positiveIntString.optional(),
});

export function register(app: App, p: Platform): void {
  app.get('/api/functions/:id/logs', async (c) => {
    const id = functionId(c);
    const query = parseWith(logsQuery, c.req.query());
    return c.json({ logs: await listEvents(p.db, id, { limit: query.limit ?? 100, version: query.version }) });
  });
}
