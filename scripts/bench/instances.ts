// A function's warm instances as the API lists them, and what two listings around a load say.
import type { BenchServer, BenchUser } from './harness.ts';
import { call } from './seed.ts';

export interface InstanceView {
  id: string;
  version: number;
  state: string;
  invocations: number;
}

export async function instancesOf(server: BenchServer, user: BenchUser, functionId: string): Promise<InstanceView[]> {
  const res = await call(server, user, 'GET', `/api/functions/${functionId}/instances`);
  if (res.status !== 200) throw new Error(`GET /instances answered ${res.status}: ${JSON.stringify(res.body)}`);
  return (res.body as { instances: InstanceView[] }).instances;
}

/**
 * What the two listings around a load say. Instances started under it are the ids listed after and
 * not before; one that started and stopped in between would be missed, which is why the
 * invocations the listed instances served are counted too: when they add up to every request sent,
 * and no instance listed before is gone, no instance went unseen.
 */
export function accountInstances(before: InstanceView[], after: InstanceView[], requests: number, concurrency: number) {
  const was = new Map(before.map((i) => [i.id, i]));
  const started = after.filter((i) => !was.has(i.id)).length;
  const gone = before.filter((b) => !after.some((a) => a.id === b.id)).length;
  const served = after.reduce((acc, i) => acc + i.invocations - (was.get(i.id)?.invocations ?? 0), 0);
  // a new instance's first `concurrency` requests are the ones that waited for its start
  const coldAtMost = started * concurrency;
  return {
    instancesBefore: before.length,
    instancesAfter: after.length,
    instancesStarted: started,
    instancesGone: gone,
    requests,
    servedByListedInstances: served,
    accountingComplete: served === requests && gone === 0,
    coldAtMost,
    warmAtLeast: requests - coldAtMost,
  };
}
