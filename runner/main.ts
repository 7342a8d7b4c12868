// `npm run start:runner`: the build runner alone.
import { loadConfigOrExit } from '../shared/config.ts';
import { openPlatform } from '../shared/platform.ts';
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

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, async () => {
    if (stopping) process.exit(1);
    stopping = true;
    platform.logger.info('shutting down', { signal });
    await runner.stop();
    await cleanup.stop();
    await driver.close();
    await platform.close();
    process.exit(0);
  });
}
