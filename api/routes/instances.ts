// GET /api/functions/:id/instances — the warm instances of the function in this serving process.
import type { Invoker } from '../../shared/domain/invoke.ts';
import type { App } from '../http/app.ts';
import { functionId } from '../http/validation.ts';

export function register(app: App, invoker: Invoker): void {
  app.get('/api/functions/:id/instances', async (c) => {
    const instances = await invoker.listInstances(c.get('userId'), functionId(c));
    return c.json({
      instances: instances.map((i) => ({
        id: i.id,
        version: i.version,
        state: i.state,
        startedAt: i.startedAt,
        lastUsedAt: i.lastUsedAt,
        invocations: i.invocations,
      })),
    });
  });
}
