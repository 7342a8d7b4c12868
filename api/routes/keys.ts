// A function's keys (for `key` access): POST /api/functions/:id/keys {name} (the key is in the
// answer, once), GET /api/functions/:id/keys, DELETE /api/functions/:id/keys/:keyId.
import { z } from 'zod';
import { createFunctionKey, deleteFunctionKey, listFunctionKeys, type FunctionKeyCache } from '../../shared/domain/function-keys.ts';
import { UUID_PATTERN } from '../../shared/domain/model.ts';
import { errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, jsonBody } from '../http/validation.ts';

export const createKeySchema = z.object({ name: z.string().trim().min(1, 'must not be empty').max(100) });

export function register(app: App, p: Platform, keys: FunctionKeyCache): void {
  app.post('/api/functions/:id/keys', async (c) => {
    const id = functionId(c);
    const body = await jsonBody(c, createKeySchema);
    return c.json(await createFunctionKey(p.db, id, body.name), 201);
  });
  app.get('/api/functions/:id/keys', async (c) => c.json({ keys: await listFunctionKeys(p.db, functionId(c)) }));
  app.delete('/api/functions/:id/keys/:keyId', async (c) => {
    const id = functionId(c);
    const keyId = c.req.param('keyId');
    if (!UUID_PATTERN.test(keyId)) throw errors.badRequest(`key id "${keyId}" is not a UUID`);
    await deleteFunctionKey(p.db, id, keyId.toLowerCase());
    keys.forget(keyId.toLowerCase());
    return c.body(null, 204);
  });
}
