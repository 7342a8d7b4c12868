// The runner side of a process: the runtime driver, the build runner, the scheduled cleanup and the
// canary controller, started together (by `npm run start:runner` and by the all-in-one `npm start`).
import type { Platform } from '../shared/platform.ts';
import { driverFromConfig } from '../shared/runtime/from-config.ts';
import { sweepBuildWorkDirs } from '../shared/work-dirs.ts';
import type { RuntimeDriver } from '../shared/runtime/types.ts';
import { CanaryController } from './canary-controller.ts';
import { CleanupSchedule } from './cleanup-schedule.ts';
import { Runner } from './runner.ts';
import { serveMetrics, type MetricsServer } from '../shared/observability/metrics-server.ts';

export interface RunnerService {
  driver: RuntimeDriver;
  runner: Runner;
  /** RUNNER_METRICS_PORT's server, when asked for */
  metricsServer?: MetricsServer;
  /** in shutdown order: stop claiming (in-flight builds get a deadline), stop the schedule and the canary controller, close the driver */
  stopSteps: (() => Promise<unknown>)[];
}

export interface RunnerServiceOptions {
  /**
   * Serve this platform's Prometheus metrics on this port (`npm run start:runner` passes
   * RUNNER_METRICS_PORT; 0: any free port). `npm start` passes none: its API's GET /metrics serves
   * the same registry.
   */
  metricsPort?: number | null;
}

export async function startRunnerService(platform: Platform, opts: RunnerServiceOptions = {}): Promise<RunnerService> {
  const d = await driverFromConfig(platform.config, platform.logger);
  // readiness checks start instances too, and builds unpack into work directories: a runner
  // killed during either leaves them behind
  await d.instances.sweepOrphans().catch((err) => platform.logger.warn('the orphan sweep failed', { err }));
  const swept = await sweepBuildWorkDirs(platform.config.dataDir).catch((err) => {
    platform.logger.warn('the build work directory sweep failed', { err });
    return 0;
  });
  if (swept > 0) platform.logger.info('removed build work directories left by a runner that died', { count: swept });
  const runner = new Runner(platform, d);
  await runner.start();
  const cleanup = new CleanupSchedule(platform, d, runner.id);
  cleanup.start();
  const canaries = new CanaryController(platform, runner.id);
  canaries.start();
  const metricsServer = opts.metricsPort !== undefined && opts.metricsPort !== null
    ? await serveMetrics(platform.metrics, {
        host: platform.config.server.host,
        port: opts.metricsPort,
        token: platform.config.observability.metricsToken,
      })
    : undefined;
  if (metricsServer) platform.logger.info('runner metrics served', { url: `${metricsServer.url}/metrics` });
  return {
    driver: d,
    runner,
    metricsServer,
    stopSteps: [() => runner.stop(), () => cleanup.stop(), () => canaries.stop(), () => d.close(), async () => metricsServer?.close()],
  };
}
