// `npm start`: the whole platform in one process on the embedded defaults.
import { loadConfigOrExit } from '../shared/config.ts';
import { openPlatform } from '../shared/platform.ts';
import { createApi, serveApi } from '../api/server.ts';

const config = loadConfigOrExit();
const platform = await openPlatform(config);
const api = await serveApi(createApi(platform), config.server);
platform.logger.info('ContainerPub is running', {
  url: api.url,
  database: config.database.client === 'sqlite' ? config.database.filename : 'postgresql',
  s3: platform.embeddedS3 ? `embedded (${platform.embeddedS3.endpoint})` : config.s3.endpoint,
});

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, async () => {
    if (stopping) process.exit(1);
    stopping = true;
    platform.logger.info('shutting down', { signal });
    await api.close();
    await platform.close();
    process.exit(0);
  });
}
