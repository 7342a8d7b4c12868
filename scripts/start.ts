// `npm start`: the whole platform in one process on the embedded defaults: the API, the runner
// (and its scheduled cleanup), SQLite and an in-process S3-compatible server unless configured
// otherwise.
import { loadConfigOrExit } from '../shared/config.ts';
import { openPlatform } from '../shared/platform.ts';
import { onShutdown } from '../shared/shutdown.ts';
import { driverFromConfig } from '../shared/runtime/from-config.ts';
import { createApi, serveApi } from '../api/server.ts';
import { CleanupSchedule } from '../runner/cleanup-schedule.ts';
import { Runner } from '../runner/runner.ts';

const config = loadConfigOrExit();
const platform = await openPlatform(config);
const driver = await driverFromConfig(config, platform.logger);
const runner = new Runner(platform, driver);
await runner.start();
const cleanup = new CleanupSchedule(platform, driver, runner.id);
cleanup.start();
const api = await serveApi(createApi(platform, { driver }), config.server);
platform.logger.info('ContainerPub is running', {
  url: api.url,
  driver: driver.name,
  database: config.database.client === 'sqlite' ? config.database.filename : 'postgresql',
  s3: platform.embeddedS3 ? `embedded (${platform.embeddedS3.endpoint})` : config.s3.endpoint,
});

onShutdown(platform.logger, [
  () => api.close(),
  () => runner.stop(),
  () => cleanup.stop(),
  () => driver.close(),
  () => platform.close(),
]);
