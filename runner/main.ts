// `npm run start:runner`: the build runner alone.
import { loadConfigOrExit } from '../shared/config.ts';
import { openPlatform } from '../shared/platform.ts';
import { onShutdown } from '../shared/shutdown.ts';
import { driverFromConfig } from '../shared/runtime/from-config.ts';
import { CleanupSchedule } from './cleanup-schedule.ts';
import { Runner } from './runner.ts';

const config = loadConfigOrExit();
if (!config.s3.endpoint) {
  // The embedded S3 server lives inside `npm start`; a separate runner must reach the same S3 as the API.
  process.stderr.write('containerpub: start:runner needs S3_ENDPOINT (and its credentials): the API and the runner must share one S3\n');
  process.exit(2);
}
const platform = await openPlatform(config);
const driver = await driverFromConfig(config, platform.logger);
const runner = new Runner(platform, driver);
await runner.start();
const cleanup = new CleanupSchedule(platform, driver, runner.id);
cleanup.start();

onShutdown(platform.logger, [
  () => runner.stop(),
  () => cleanup.stop(),
  () => driver.close(),
  () => platform.close(),
]);
