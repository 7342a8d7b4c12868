// Ready before live: a freshly built version must start one instance that passes its readiness
// check (the function's module loaded, its socket answering) before it may be activated. A module
// that throws at import, exits at start or never answers fails its build, and the live version is
// untouched.
import { StartError, waitReady } from './instance.ts';
import type { InstanceSpec, RuntimeDriver } from './types.ts';

/** Starts one instance, waits for it to be ready, stops it. Throws a StartError when it never is. */
export async function checkReadiness(
  driver: RuntimeDriver,
  spec: InstanceSpec,
  timeoutMs: number,
): Promise<{ readyMs: number; log: string }> {
  const started = performance.now();
  const instance = await driver.instances.start(spec);
  try {
    await waitReady(instance, timeoutMs, spec.memoryMb);
    return { readyMs: Math.round(performance.now() - started), log: instance.log() };
  } finally {
    await instance.kill();
  }
}

export { StartError };
