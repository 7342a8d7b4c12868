// `npm run start:runner`: the build runner (and its scheduled cleanup) alone.
import { loadConfigOrExit } from '../shared/config.ts';
import { openPlatformOrExit } from '../shared/platform.ts';
import { onShutdown } from '../shared/shutdown.ts';
import { startRunnerService } from './service.ts';

const config = loadConfigOrExit();
if (!config.s3.endpoint) {
  // The embedded S3 server lives inside `npm start`; a separate runner must reach the same S3 as the API.
  process.stderr.write('containerpub: start:runner needs S3_ENDPOINT (and its credentials): the API and the runner must share one S3\n');
  process.exit(2);
}
const platform = await openPlatformOrExit(config);
const service = await startRunnerService(platform, { metricsPort: config.observability.runnerMetricsPort });
onShutdown(platform.logger, [...service.stopSteps, () => platform.close()]);
