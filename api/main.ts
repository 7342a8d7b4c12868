// `npm run start:api`: the API alone (PostgreSQL + real S3 in production; runners run elsewhere).
import { loadConfigOrExit } from '../shared/config.ts';
import { Invoker } from '../shared/domain/invoke.ts';
import { openPlatformOrExit } from '../shared/platform.ts';
import { onShutdown } from '../shared/shutdown.ts';
import { sweepUploadTemp } from '../shared/storage/upload-temp.ts';
import { driverFromConfig } from '../shared/runtime/from-config.ts';
import { createApi, serveApi } from './server.ts';

const config = loadConfigOrExit();
const platform = await openPlatformOrExit(config);
// Temporary files of multipart deploys a killed predecessor left (its uploads died with it).
const swept = await sweepUploadTemp(config.dataDir);
if (swept > 0) platform.logger.info('removed temporary upload files left by a stopped process', { files: swept });
// Invocations run here, on warm instances of the same driver the runners build for.
const driver = await driverFromConfig(config, platform.logger);
const invoker = new Invoker(platform, driver);
await invoker.start();
const api = await serveApi(createApi(platform, { driver, invoker }), config.server);
platform.logger.info('API listening', { url: api.url, database: config.database.client, driver: driver.name });

const grace = config.server.shutdownGraceMs;
onShutdown(platform.logger, [
  async () => api.stopAccepting(),
  () => invoker.close(grace),
  () => api.close(grace),
  () => driver.close(),
  () => platform.close(),
]);
