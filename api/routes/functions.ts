// GET /api/functions, GET /api/functions/:id, DELETE /api/functions/:id
import { deleteFunction, type RemovedFunction } from '../../shared/domain/delete-function.ts';
import { getFunctionView, listFunctions } from '../../shared/domain/functions.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId } from '../http/validation.ts';

export interface FunctionRoutesOptions {
  /** removes images or unpacked artifacts of a deleted function (the runtime driver's job) */
  removeRuntimeArtifacts?: (removed: RemovedFunction) => Promise<void>;
}

export function register(app: App, p: Platform, opts: FunctionRoutesOptions = {}): void {
  app.get('/api/functions', async (c) => {
    return c.json({ functions: await listFunctions(p.db, c.get('userId')) });
  });
  app.get('/api/functions/:id', async (c) => {
    return c.json(await getFunctionView(p.db, c.get('userId'), functionId(c)));
  });
  app.delete('/api/functions/:id', async (c) => {
    const id = functionId(c);
    // deleteFunction checks ownership under the function's lock
    await deleteFunction(p, c.get('userId'), id, { removeRuntimeArtifacts: opts.removeRuntimeArtifacts });
    return c.body(null, 204);
  });
}
