// POST /api/functions/:id/rollback {version}
import { z } from 'zod';
import { rollbackToVersion } from '../../shared/domain/rollback.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, jsonBody } from '../http/validation.ts';

export const rollbackSchema = z.object({
  version: z.number().int('must be an integer').positive('must be a positive integer'),
});

export function register(app: App, p: Platform): void {
  app.post('/api/functions/:id/rollback', async (c) => {
    const id = functionId(c);
    const { version } = await jsonBody(c, rollbackSchema);
    // the actor's email is read with the rest of the rollback's reads
    const result = await rollbackToVersion(p.db, id, version, { actorUserId: c.get('userId') });
    if (result.restoring) {
      return c.json(
        {
          message: `Restoring version ${result.version} from its archive; it becomes active once rebuilt`,
          version: result.version,
          deploymentId: result.deploymentId,
          status: 'building',
        },
        202,
      );
    }
    return c.json({
      message: result.changed
        ? `Successfully rolled back to version ${result.version}`
        : `Version ${result.version} is already active`,
      version: result.version,
      deploymentId: result.deploymentId,
    });
  });
}
