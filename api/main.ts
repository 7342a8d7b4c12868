// `npm run start:api`: the API alone (PostgreSQL + real S3 in production; runners run elsewhere).
import { loadConfigOrExit } from '../shared/config.ts';
import { openPlatform } from '../shared/platform.ts';
import { onShutdown } from '../shared/shutdown.ts';
import { driverFromConfig } from '../shared/runtime/from-config.ts';
import { createApi, serveApi } from './server.ts';

const config = loadConfigOrExit();
const platform = await openPlatform(config);
// Invocations run here, on the same driver the runners build for.
const driver = await driverFromConfig(config, platform.logger);
const api = await serveApi(createApi(platform, { driver }), config.server);
platform.logger.info('API listening', { url: api.url, database: config.database.client, driver: driver.name });

onShutdown(platform.logger, [
  () => api.close(),
  () => driver.close(),
  () => platform.close(),
]);
