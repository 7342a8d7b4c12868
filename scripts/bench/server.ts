// The system under test, in its own process: the API (and, when asked, the build runner) on the
// platform's embedded defaults, configured by the environment like `npm start`. The bench drives it
// from another process, so the load generator and the server do not share an event loop (on a
// 2-core machine each gets a core). Prints one JSON line {url, s3Endpoint, driver} once it answers.
// Invocations run here too, on warm instances (child processes or containers of this process), as
// with `npm start` and `npm run start:api`.
import { loadConfigOrExit } from '../../shared/config.ts';
import { Invoker } from '../../shared/domain/invoke.ts';
import { openPlatformOrExit } from '../../shared/platform.ts';
import { driverFromConfig } from '../../shared/runtime/from-config.ts';
import { createApi, serveApi } from '../../api/server.ts';
import { Runner } from '../../runner/runner.ts';

const config = loadConfigOrExit();
// like `npm start`: a fresh DATA_DIR gets its secrets key
const platform = await openPlatformOrExit(config, { secretsKey: 'generate' });
const driver = await driverFromConfig(config, platform.logger);
const runner = process.env.BENCH_RUNNER === 'on' ? new Runner(platform, driver) : undefined;
await runner?.start();
const invoker = new Invoker(platform, driver);
await invoker.start();
const api = await serveApi(createApi(platform, { driver, invoker }), config.server);

process.stdout.write(
  JSON.stringify({ url: api.url, s3Endpoint: platform.embeddedS3?.endpoint ?? config.s3.endpoint, driver: driver.name }) + '\n',
);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  // as api/main.ts: no new requests, then every instance stopped (a benchmark leaves no container
  // or child process behind), then the rest
  api.stopAccepting();
  await invoker.close(1_000);
  await api.close();
  await runner?.stop(5_000);
  await driver.close();
  await platform.close();
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
// The parent going away (a crashed bench) must not leave a server behind.
process.stdin.on('end', () => void stop());
process.stdin.resume();
