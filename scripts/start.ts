// `npm start`: the whole platform in one process on the embedded defaults: the API, the runner
// (and its scheduled cleanup), SQLite and an in-process S3-compatible server unless configured
// otherwise. Warm instances of functions live here too.
import { loadConfigOrExit } from '../shared/config.ts';
import { Invoker } from '../shared/domain/invoke.ts';
import { openPlatformOrExit } from '../shared/platform.ts';
import { onShutdown } from '../shared/shutdown.ts';
import { sweepUploadTemp } from '../shared/storage/upload-temp.ts';
import { createApi, serveApi } from '../api/server.ts';
import { startRunnerService } from '../runner/service.ts';

const config = loadConfigOrExit();
// the first run generates DATA_DIR/secrets.key (start:api and start:runner need SECRETS_KEY or that file)
const platform = await openPlatformOrExit(config, { secretsKey: 'generate' });
// Temporary files of multipart deploys a killed predecessor left (its uploads died with it).
const swept = await sweepUploadTemp(config.dataDir);
if (swept > 0) platform.logger.info('removed temporary upload files left by a stopped process', { files: swept });
// one platform, one metrics registry: the API's GET /metrics serves the runner's metrics too
const service = await startRunnerService(platform);
const invoker = new Invoker(platform, service.driver);
await invoker.start();
const api = await serveApi(createApi(platform, { driver: service.driver, invoker }), config.server);
platform.logger.info('ContainerPub is running', {
  url: api.url,
  driver: service.driver.name,
  database: config.database.client === 'sqlite' ? config.database.filename : 'postgresql',
  s3: platform.embeddedS3 ? `embedded (${platform.embeddedS3.endpoint})` : config.s3.endpoint,
});

const grace = config.server.shutdownGraceMs;
onShutdown(platform.logger, [
  async () => api.stopAccepting(),
  () => invoker.close(grace),
  () => api.close(grace),
  ...service.stopSteps,
  () => platform.close(),
]);
