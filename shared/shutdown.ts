// Graceful shutdown for every entry point: the first SIGINT/SIGTERM runs the steps in order (stop
// taking work, let in-flight work finish, release resources); a second signal exits at once.
import type { Logger } from './logger.ts';

export function onShutdown(logger: Logger, steps: (() => Promise<unknown>)[]): void {
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, async () => {
      if (stopping) process.exit(1);
      stopping = true;
      logger.info('shutting down', { signal });
      for (const step of steps) {
        try {
          await step();
        } catch (err) {
          logger.error('shutdown step failed', { err });
        }
      }
      process.exit(0);
    });
  }
}
