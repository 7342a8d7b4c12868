// Progressive delivery by hand: the traffic split, promotion, approval and tags.
//   PUT    /api/functions/:id/traffic {candidate: {version, percent}, sticky?}   DELETE …/traffic
//   POST   /api/functions/:id/promote                  the candidate becomes the live version
//   POST   /api/functions/:id/approve {version}        a version that waited for approval goes live
//   GET    /api/functions/:id/tags    PUT/DELETE /api/functions/:id/tags/:tag {version}
// (Canaries, which drive the split automatically, are in canary.ts.)
import { z } from 'zod';
import { rollbackToVersion } from '../../shared/domain/rollback.ts';
import { deleteTag, listTags, setTag, setTagSchema, tagNameSchema } from '../../shared/domain/tags.ts';
import { actorOf, clearTraffic, promote, setTraffic, trafficSchema } from '../../shared/domain/traffic.ts';
import { getFunctionView } from '../../shared/domain/functions.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, jsonBody, parseWith } from '../http/validation.ts';
import { urlBase } from './functions.ts';

const tagParam = z.object({ tag: tagNameSchema });

export const approveSchema = z.strictObject({
  version: z.number().int('must be an integer').positive('must be a positive integer'),
});

export function register(app: App, p: Platform): void {
  app.put('/api/functions/:id/traffic', async (c) => {
    const id = functionId(c);
    const body = await jsonBody(c, trafficSchema);
    await setTraffic(p.db, id, body, await actorOf(p.db.knex, c.get('userId')));
    return c.json(await getFunctionView(p.db, c.get('userId'), id, urlBase(c, p)));
  });
  app.delete('/api/functions/:id/traffic', async (c) => {
    const id = functionId(c);
    await clearTraffic(p.db, id, await actorOf(p.db.knex, c.get('userId')));
    return c.json(await getFunctionView(p.db, c.get('userId'), id, urlBase(c, p)));
  });
  app.post('/api/functions/:id/promote', async (c) => {
    const id = functionId(c);
    const r = await promote(p.db, id, await actorOf(p.db.knex, c.get('userId')));
    return c.json({ message: `Version ${r.version} is now live`, ...r });
  });
  app.post('/api/functions/:id/approve', async (c) => {
    const id = functionId(c);
    const { version } = await jsonBody(c, approveSchema);
    const r = await rollbackToVersion(p.db, id, version, { actor: await actorOf(p.db.knex, c.get('userId')), kind: 'approve' });
    if (r.restoring) {
      const message = `Version ${r.version} approved; it is being restored from its archive and goes live once rebuilt`;
      return c.json({ message, version: r.version, deploymentId: r.deploymentId, status: 'building' }, 202);
    }
    return c.json({ message: r.changed ? `Version ${r.version} approved and live` : `Version ${r.version} is already live`, version: r.version, deploymentId: r.deploymentId });
  });

  app.get('/api/functions/:id/tags', async (c) => c.json({ tags: await listTags(p.db.knex, functionId(c)) }));
  app.put('/api/functions/:id/tags/:tag', async (c) => {
    const id = functionId(c);
    const { tag } = parseWith(tagParam, { tag: c.req.param('tag') });
    const { version } = await jsonBody(c, setTagSchema);
    return c.json(await setTag(p.db, id, tag, version, await actorOf(p.db.knex, c.get('userId'))));
  });
  app.delete('/api/functions/:id/tags/:tag', async (c) => {
    const id = functionId(c);
    const { tag } = parseWith(tagParam, { tag: c.req.param('tag') });
    await deleteTag(p.db, id, tag, await actorOf(p.db.knex, c.get('userId')));
    return c.body(null, 204);
  });
}
