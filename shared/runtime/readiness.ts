// Ready before live: a freshly built version must start one instance that passes its readiness
// check (the function's module loaded, its socket answering) before it may be activated. A module
// that throws at import, exits at start or never answers fails its build, and the live version is
// untouched.
import { StartError, waitReady } from './instance.ts';
import { readyInstancesOf } from './ready-instances.ts';
import type { InstanceSpec, RunningInstance, RuntimeDriver } from './types.ts';

/**
 * Starts one instance and waits for it to be ready. A ready one is parked for a pool of this
 * process to adopt (ready-instances.ts), or stopped when none would; one that fails is stopped.
 * Throws a StartError when it never is ready, and the signal's reason when `signal` aborts first
 * (an instance that starts after that is stopped). `kept`: the ready instance was parked.
 */
export async function checkReadiness(
  driver: RuntimeDriver,
  spec: InstanceSpec,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ readyMs: number; log: string; kept: boolean }> {
  const started = performance.now();
  const instance = await untilStarted(driver.instances.start(spec), signal);
  let kept = false;
  try {
    await waitReady(instance, timeoutMs, spec.memoryMb);
    const { instanceId: _id, ...shape } = spec;
    kept = !signal?.aborted && readyInstancesOf(driver.instances).park(shape, instance);
    return { readyMs: Math.round(performance.now() - started), log: instance.log(), kept };
  } finally {
    if (!kept) await instance.kill();
  }
}

/** A start can take long (an image pulled, copied on first use): it is not waited for past an abort. */
function untilStarted(starting: Promise<RunningInstance>, signal?: AbortSignal): Promise<RunningInstance> {
  if (!signal) return starting;
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason);
      starting.then((instance) => instance.kill()).catch(() => {});
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    starting.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export { StartError };
