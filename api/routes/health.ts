// GET /healthz: the process answers. GET /readyz: its database and S3 answer too.
import type { Platform } from '../../shared/platform.ts';
import { errorBody, type App } from '../http/app.ts';

async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function register(app: App, p: Platform): void {
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const checks = await Promise.allSettled([
      within(2000, p.db.knex.raw('select 1')),
      within(2000, p.storage.ping()),
    ]);
    const [database, storage] = checks.map((r) => (r.status === 'fulfilled' ? 'ok' : `error: ${(r.reason as Error).message}`));
    if (database === 'ok' && storage === 'ok') return c.json({ status: 'ready', database, storage });
    return c.json({ ...errorBody('unavailable', 'a dependency is not answering'), database, storage }, 503);
  });
}
