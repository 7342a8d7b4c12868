// GET /api/functions/:id/deployments/:a/compare/:b: what changed from version a to version b.
import { compareVersions } from '../../shared/domain/compare.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, versionFrom } from '../http/validation.ts';

export function register(app: App, p: Platform): void {
  app.get('/api/functions/:id/deployments/:a/compare/:b', async (c) => {
    const id = functionId(c);
    const a = versionFrom(c, 'a');
    const b = versionFrom(c, 'b');
    return c.json(await compareVersions(p, id, a, b));
  });
}
