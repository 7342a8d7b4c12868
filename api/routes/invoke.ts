// POST /api/functions/:id/invoke[?version=N|?tag=T] — run the live version (or the candidate for its
// share of the traffic; X-Traffic-Key keeps a caller on one version of a sticky split; or a named
// built one, or a tagged one) with a
// JSON event, on a warm instance. GET /api/functions/:id/invocations — what recent invocations printed.
import { z } from 'zod';
import { errors } from '../../shared/errors.ts';
import { listInvocations } from '../../shared/domain/invocation-log.ts';
import { tagNameSchema } from '../../shared/domain/tags.ts';
import { normalizeTrafficKey, TRAFFIC_KEY_HEADER } from '../../shared/domain/traffic-choice.ts';
import type { Invoker } from '../../shared/domain/invoke.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { readBodyText } from '../http/body.ts';
import { functionId, parseWith, positiveIntString } from '../http/validation.ts';

export const MAX_EVENT_BYTES = 6 * 1024 * 1024;

export const invokeQuery = z.object({ version: positiveIntString.optional(), tag: tagNameSchema.optional() }).refine((q) => q.version === undefined || q.tag === undefined, 'give "version" or "tag", not both');
export const invocationsQuery = z.object({
  limit: positiveIntString.pipe(z.number().max(200, 'must be at most 200')).optional(),
  version: positiveIntString.optional(),
});

export function register(app: App, p: Platform, invoker: Invoker): void {
  app.post(
    '/api/functions/:id/invoke',
    async (c, next) => {
      // before reading anything: a client that sent Expect: 100-continue gets this instead of a 100
      const declared = Number(c.req.header('content-length') ?? 0);
      if (declared > MAX_EVENT_BYTES) throw errors.tooLarge(MAX_EVENT_BYTES, declared, 'event');
      return next();
    },
    async (c) => {
      const id = functionId(c);
      const { version, tag } = parseWith(invokeQuery, c.req.query());
      const text = await readBodyText(c, MAX_EVENT_BYTES, () => errors.tooLarge(MAX_EVENT_BYTES, undefined, 'event'));
      // the event travels to the instance as the text it came in, once known to be JSON
      let body = '{}';
      if (text.trim() !== '') {
        try {
          JSON.parse(text);
        } catch {
          throw errors.invalidJson();
        }
        body = text;
      }
      const trafficKey = normalizeTrafficKey(c.req.header(TRAFFIC_KEY_HEADER));
      const out = await invoker.invoke({ userId: c.get('userId'), functionId: id, version, tag, trafficKey, body });
      c.header('X-Function-Version', String(out.version));
      c.header('X-Request-Id', out.requestId);
      return c.json(out);
    },
  );

  app.get('/api/functions/:id/invocations', async (c) => {
    const id = functionId(c);
    const query = parseWith(invocationsQuery, c.req.query());
    return c.json({ invocations: await listInvocations(p.db, id, { limit: query.limit ?? 20, version: query.version }) });
  });
}
