// The caller's own tokens and account (behind requireUser):
// GET /api/auth/tokens, POST /api/auth/tokens {name, expiresInDays?}, DELETE /api/auth/tokens/:id,
// POST /api/auth/logout, GET /api/auth/me
import { z } from 'zod';
import { getUser } from '../../shared/domain/auth.ts';
import { issueToken, listTokens, revokeToken, type TokenCache } from '../../shared/domain/tokens.ts';
import { UUID_PATTERN } from '../../shared/domain/model.ts';
import { errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { jsonBody } from '../http/validation.ts';

export const createTokenSchema = z.object({
  name: z.string().trim().min(1, 'must not be empty').max(100),
  expiresInDays: z.number().int('must be a whole number of days').min(1).max(3650).optional(),
});

export function register(app: App, p: Platform, tokens: TokenCache): void {
  app.get('/api/auth/me', async (c) => c.json(await getUser(p.db, c.get('userId'))));
  app.get('/api/auth/tokens', async (c) => c.json({ tokens: await listTokens(p.db, c.get('userId'), c.get('tokenId')) }));
  app.post('/api/auth/tokens', async (c) => {
    const body = await jsonBody(c, createTokenSchema);
    const issued = await issueToken(p.db, c.get('userId'), {
      name: body.name,
      ttlDays: body.expiresInDays ?? p.config.auth.tokenTtlDays,
    });
    return c.json(issued, 201);
  });
  app.delete('/api/auth/tokens/:id', async (c) => {
    const id = c.req.param('id');
    if (!UUID_PATTERN.test(id)) throw errors.badRequest(`token id "${id}" is not a UUID`);
    await revokeToken(p.db, c.get('userId'), id.toLowerCase());
    tokens.forget(id.toLowerCase());
    return c.body(null, 204);
  });
  app.post('/api/auth/logout', async (c) => {
    await revokeToken(p.db, c.get('userId'), c.get('tokenId'));
    tokens.forget(c.get('tokenId'));
    return c.body(null, 204);
  });
}
