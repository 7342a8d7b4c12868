// GET /api/functions, GET /api/functions/:id, PATCH /api/functions/:id {access?, requireApproval?}, DELETE /api/functions/:id,
// GET /api/functions/:id/config, PATCH /api/functions/:id/config {patch} (a new version, no rebuild)
import type { Context } from 'hono';
import { z } from 'zod';
import { accessSchema, setFunctionSettings } from '../../shared/domain/access.ts';
import type { UrlBase } from '../../shared/domain/endpoint-address.ts';
import { currentConfig, requestConfigChange } from '../../shared/domain/config-change.ts';
import { configPatchSchema } from '../../shared/domain/release-config.ts';
import { deleteFunction, type RemovedFunction } from '../../shared/domain/delete-function.ts';
import { getFunctionView, listFunctions } from '../../shared/domain/functions.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, jsonBody } from '../http/validation.ts';

export const patchFunctionSchema = z
  .strictObject({ access: accessSchema.optional(), requireApproval: z.boolean().optional() })
  .refine((b) => b.access !== undefined || b.requireApproval !== undefined, 'set "access" or "requireApproval"');

/** Where this platform's function URLs start: PUBLIC_URL, else the origin this request reached. */
export function urlBase(c: Context, p: Platform): UrlBase {
  return { origin: p.config.uploads.publicUrl ?? new URL(c.req.url).origin, functionsDomain: p.config.endpoints.functionsDomain };
}

export interface FunctionRoutesOptions {
  /** removes images or unpacked artifacts of a deleted function (the runtime driver's job) */
  removeRuntimeArtifacts?: (removed: RemovedFunction) => Promise<void>;
}

export function register(app: App, p: Platform, opts: FunctionRoutesOptions = {}): void {
  app.get('/api/functions', async (c) => {
    return c.json({ functions: await listFunctions(p.db, c.get('userId'), urlBase(c, p)) });
  });
  app.get('/api/functions/:id', async (c) => {
    return c.json(await getFunctionView(p.db, c.get('userId'), functionId(c), urlBase(c, p)));
  });
  app.patch('/api/functions/:id', async (c) => {
    const id = functionId(c);
    const body = await jsonBody(c, patchFunctionSchema);
    await setFunctionSettings(p.db, c.get('userId'), id, body);
    return c.json(await getFunctionView(p.db, c.get('userId'), id, urlBase(c, p)));
  });
  app.get('/api/functions/:id/config', async (c) => c.json(await currentConfig(p.db, p.config, functionId(c))));
  app.patch('/api/functions/:id/config', async (c) => {
    const id = functionId(c);
    const patch = await jsonBody(c, configPatchSchema);
    return c.json(await requestConfigChange(p, c.get('userId'), id, patch), 202);
  });
  app.delete('/api/functions/:id', async (c) => {
    const id = functionId(c);
    // deleteFunction checks ownership under the function's lock
    await deleteFunction(p, c.get('userId'), id, { removeRuntimeArtifacts: opts.removeRuntimeArtifacts });
    return c.body(null, 204);
  });
}
