// Which runtime driver a version belongs to. A version's artifact (an image, or an unpacked
// directory) exists only for the driver that built it: invoking, cleaning up or deleting it with
// the other driver would run the wrong thing, or "remove" nothing and record it as removed.
import type { RuntimeDriver } from '../runtime/types.ts';

export type DriverName = RuntimeDriver['name'];

/**
 * The driver that built a version. Rows built before runtime_driver was recorded: the docker
 * driver always sets an image tag and the process driver never does, so the tag tells them apart.
 */
export function versionDriver(row: { runtime_driver?: string | null; image_tag: string | null }): DriverName {
  if (row.runtime_driver === 'docker' || row.runtime_driver === 'process') return row.runtime_driver;
  return row.image_tag ? 'docker' : 'process';
}
