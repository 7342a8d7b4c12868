// The server configurations the scenarios run against. Scenarios that need the same one share it
// (each with a user of its own); everything not named here is the platform's default.
import type { ServerOptions } from './harness.ts';
import type { Sizes } from './sizes.ts';

export type ServerKey = 'api' | 'runner-process' | 'runner-docker' | 'runner-process-poll';

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
    case 'runner-process-poll':
      return { runner: true, env: { ...poll, RUNTIME_DRIVER: 'process', RUNNER_NOTIFY: 'off' } };
  }
}
