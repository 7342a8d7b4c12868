// The runtime driver this process uses, built from the platform's configuration.
import path from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { selectDriver } from './select.ts';
import type { RuntimeDriver } from './types.ts';

export function driverFromConfig(config: Config, logger: Logger): Promise<RuntimeDriver> {
  const r = config.runtime;
  return selectDriver({
    driver: r.driver,
    listenHost: config.server.host,
    docker: {
      registry: r.registry,
      registryApiUrl: r.registryApiUrl,
      baseImage: r.baseImage,
      instanceDir: r.instanceDir,
      cpus: r.cpus,
      pidsLimit: r.pidsLimit,
      network: r.network,
      dataDir: config.dataDir,
      ioTimeoutMs: config.runner.ioTimeoutMs,
      buildMemoryMb: config.runner.buildMemoryMb,
      buildCpus: config.runner.buildCpus,
      allowedBaseImages: config.runner.allowedBaseImages,
      logger,
    },
    process: { artifactsDir: path.join(config.dataDir, 'artifacts'), instanceDir: r.instanceDir, logger },
  });
}
