// `npm run start:api`: the API alone (PostgreSQL + real S3 in production; runners run elsewhere).
import { loadConfigOrExit } from '../shared/config.ts';
import { openPlatform } from '../shared/platform.ts';
import { driverFromConfig } from '../shared/runtime/from-config.ts';
import { createApi, serveApi } from './server.ts';

const config = loadConfigOrExit();
const platform = await openPlatform(config);
// Invocations run here, on the same driver the runners build for.
const driver = await driverFromConfig(config, platform.logger);
const api = await serveApi(createApi(platform, { driver }), config.server);
platform.logger.info('API listening', { url: api.url, database: config.database.client, driver: driver.name });

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, async () => {
    if (stopping) process.exit(1);
    stopping = true;
    platform.logger.info('shutting down', { signal });
    await api.close();
    await driver.close();
    await platform.close();
    process.exit(0);
  });
}
