// POST /api/functions/:id/canary {version, steps?, intervalSeconds?, maxErrorRate?, maxP99Ms?, minRequests?}
// GET /api/functions/:id/canary (the running canary, else the latest), DELETE (abort the running one).
// The runner's controller walks it through its steps (runner/canary-controller.ts).
import { abortCanary, canaryRequestSchema, canaryView, startCanary } from '../../shared/domain/canary.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, jsonBody } from '../http/validation.ts';

export function register(app: App, p: Platform): void {
  app.post('/api/functions/:id/canary', async (c) => {
    const id = functionId(c);
    const input = await jsonBody(c, canaryRequestSchema);
    return c.json(await startCanary(p.db, c.get('userId'), id, input), 201);
  });
  app.get('/api/functions/:id/canary', async (c) => c.json(await canaryView(p.db, functionId(c))));
  app.delete('/api/functions/:id/canary', async (c) => c.json(await abortCanary(p.db, c.get('userId'), functionId(c))));
}
