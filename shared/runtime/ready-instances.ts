// The instance a readiness check started becomes the version's first warm instance when the process
// that ran the check also serves invocations (`npm start`, or a runner inside the API process).
// The check parks it here instead of stopping it, and the pool that pre-warms the version right
// after its activation takes it instead of starting another one. A deploy then costs one instance
// start, not two, and the new version is warm the moment it goes live. In a runner-only process no
// pool adopts, and the check stops its instance as before.
//
// Bounds: at most MAX_PARKED instances at once, each for at most PARK_MS. One that exits, or is not
// taken in time (a version waiting for approval, a version a newer one replaced), is stopped. A pool
// takes a parked instance only if it would start exactly that one: same version and image, memory,
// network and environment.
import { isDeepStrictEqual } from 'node:util';
import type { InstanceBackend, InstanceSpec, RunningInstance } from './types.ts';

/** Activation follows the readiness check within milliseconds; this covers a loaded machine. */
export const PARK_MS = 10_000;
const MAX_PARKED = 8;

/** What decides which instance a start makes: all of InstanceSpec but its id. */
export type InstanceShape = Omit<InstanceSpec, 'instanceId'>;

interface Parked {
  shape: InstanceShape;
  instance: RunningInstance;
  timer: NodeJS.Timeout;
}

export class ReadyInstances {
  private adopters = 0;
  private readonly parked = new Map<string, Parked>();

  constructor(
    private readonly parkMs = PARK_MS,
    private readonly maxParked = MAX_PARKED,
  ) {}

  /**
   * A pool of this process takes parked instances from now on. The function returned ends that;
   * once no pool is left, what is parked is stopped (it resolves when they are gone).
   */
  addAdopter(): () => Promise<void> {
    this.adopters++;
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      if (--this.adopters > 0) return;
      await Promise.all([...this.parked.keys()].map((id) => this.stop(id)));
    };
  }

  /** Keeps a ready instance for a pool to take. False when no pool would (the caller stops it). */
  park(shape: InstanceShape, instance: RunningInstance): boolean {
    if (this.adopters === 0 || this.parked.size >= this.maxParked) return false;
    const entry: Parked = { shape, instance, timer: setTimeout(() => void this.stop(instance.id), this.parkMs) };
    entry.timer.unref();
    this.parked.set(instance.id, entry);
    // one that dies while parked is forgotten (its backend has freed what it held)
    void instance.exited.then(() => {
      if (this.parked.get(instance.id) !== entry) return;
      clearTimeout(entry.timer);
      this.parked.delete(instance.id);
    });
    return true;
  }

  /** The parked instance a start of `shape` would make, now the caller's; null when there is none. */
  take(shape: InstanceShape): RunningInstance | null {
    for (const [id, entry] of this.parked) {
      if (!isDeepStrictEqual(normalized(entry.shape), normalized(shape))) continue;
      clearTimeout(entry.timer);
      this.parked.delete(id);
      return entry.instance;
    }
    return null;
  }

  /** How many instances wait to be taken. */
  get size(): number {
    return this.parked.size;
  }

  private async stop(id: string): Promise<void> {
    const entry = this.parked.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.parked.delete(id);
    await entry.instance.kill().catch(() => {});
  }
}

/** Absent and empty settings start the same instance. */
function normalized(shape: InstanceShape) {
  return {
    functionId: shape.functionId,
    deploymentId: shape.deploymentId,
    version: shape.version,
    imageTag: shape.imageTag ?? null,
    memoryMb: shape.memoryMb,
    env: shape.env ?? {},
    network: shape.network ?? 'none',
  };
}

/** One per backend: the runner and the pools of a process share their driver, and so this. */
const byBackend = new WeakMap<InstanceBackend, ReadyInstances>();

export function readyInstancesOf(backend: InstanceBackend): ReadyInstances {
  let ready = byBackend.get(backend);
  if (!ready) byBackend.set(backend, (ready = new ReadyInstances()));
  return ready;
}
