// The server configurations the scenarios run against. Scenarios that need the same one share it
// (each with a user of its own); everything not named here is the platform's default.
import type { ServerOptions } from './harness.ts';
import type { Sizes } from './sizes.ts';

export type ServerKey = 'api' | 'runner-process' | 'runner-docker' | 'runner-docker-registry' | 'runner-process-poll' | 'runner-process-cold' | 'runner-docker-cold';

/**
 * FUNCTION_IDLE_MS of the cold-start servers (the smallest the platform accepts): an instance stops
 * right after its invocation, so every sample can find its version scaled to zero again quickly.
 */
export const COLD_IDLE_MS = 100;

/** The registry of the e2e scenario's docker server: BENCH_REGISTRY, else the one setup-services.sh runs. */
export function benchRegistry(): string {
  return process.env.BENCH_REGISTRY ?? process.env.TEST_REGISTRY ?? '127.0.0.1:5000';
}

export function serverOptions(key: ServerKey, sizes: Sizes): Omit<ServerOptions, 'db'> {
  const poll = { RUNNER_POLL_MS: String(sizes.runnerPollMs) };
  switch (key) {
    // no runner: nothing gets built, whatever is queued
    case 'api':
      return { runner: false };
    case 'runner-process':
      return { runner: true, env: { ...poll, RUNTIME_DRIVER: 'process' } };
    case 'runner-docker':
      return { runner: true, env: { ...poll, RUNTIME_DRIVER: 'docker' } };
    // the e2e scenario's: images pushed to a registry, as a cluster runs
    case 'runner-docker-registry':
      return { runner: true, env: { ...poll, RUNTIME_DRIVER: 'docker', REGISTRY: benchRegistry() } };
    case 'runner-process-poll':
      return { runner: true, env: { ...poll, RUNTIME_DRIVER: 'process', RUNNER_NOTIFY: 'off' } };
    // the warm figures use the default idle time (minutes): nothing scales to zero under them
    case 'runner-process-cold':
      return { runner: true, env: { ...poll, RUNTIME_DRIVER: 'process', FUNCTION_IDLE_MS: String(COLD_IDLE_MS) } };
    case 'runner-docker-cold':
      return { runner: true, env: { ...poll, RUNTIME_DRIVER: 'docker', FUNCTION_IDLE_MS: String(COLD_IDLE_MS) } };
  }
}
