// Deployment history: GET /api/functions/:id/deployments[/:version],
// POST /api/functions/:id/deployments/:version/complete
import { z } from 'zod';
import { getDeploymentByVersion, listDeployments, tagsByDeployment, toDeploymentDetailView } from '../../shared/domain/deployments.ts';
import { completeUpload } from '../../shared/domain/uploads.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, parseWith, positiveIntString, versionFrom } from '../http/validation.ts';


export const historyQuery = z.object({
  limit: positiveIntString.pipe(z.number().max(500, 'must be at most 500')).optional(),
  before: positiveIntString.optional(),
});

export function register(app: App, p: Platform): void {
  app.get('/api/functions/:id/deployments', async (c) => {
    const id = functionId(c);
    const query = parseWith(historyQuery, c.req.query());
    const limit = query.limit ?? 50;
    const deployments = await listDeployments(p.db, id, { limit, before: query.before }, p.config);
    const last = deployments.at(-1);
    return c.json({
      deployments,
      nextBefore: deployments.length === limit && last && last.version > 1 ? last.version : null,
    });
  });

  app.get('/api/functions/:id/deployments/:version', async (c) => {
    const id = functionId(c);
    const version = versionFrom(c);
    const row = await getDeploymentByVersion(p.db, id, version);
    const tags = await tagsByDeployment(p.db.knex, id);
    return c.json(toDeploymentDetailView(row, p.config, tags.get(row.id)));
  });

  app.post('/api/functions/:id/deployments/:version/complete', async (c) => {
    const id = functionId(c);
    const version = versionFrom(c);
    return c.json(await completeUpload(p, id, version), 202);
  });
}
