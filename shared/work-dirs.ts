// Scratch directories of builds (DATA_DIR/builds): one per build attempt, named after the process
// that owns it, so that what a SIGKILLed runner left behind is removed by the next runner to start,
// or by cleanup, without ever touching a directory a live runner (this one or another sharing
// DATA_DIR) is working in. The owner is in the name, not in a file inside: the directory holds the
// unpacked archive, and a file of ours there would become part of the function.
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { currentOwner, ownerAlive } from './process-owner.ts';

const hostTag = (host: string) => createHash('sha256').update(host).digest('hex').slice(0, 8);
const NAME = /^w-([0-9a-f]{8})-(\d+)-(\d*)-/;
/** A directory that does not carry an owner (an older release's) is removed once this old. */
const UNOWNED_MAX_AGE_MS = 60 * 60 * 1000;

export function buildsDir(dataDir: string): string {
  return path.join(dataDir, 'builds');
}

/** A fresh work directory path for one build attempt of this process (not created). */
export function newBuildWorkDir(dataDir: string, buildId: string): string {
  const { host, pid, start } = currentOwner;
  return path.join(buildsDir(dataDir), `w-${hostTag(host)}-${pid}-${start}-${buildId.slice(0, 8)}-${randomUUID().slice(0, 8)}`);
}

/** Removes the work directories whose owner is gone; returns how many. */
export async function sweepBuildWorkDirs(dataDir: string): Promise<number> {
  const base = buildsDir(dataDir);
  let names: string[];
  try {
    names = await fs.promises.readdir(base);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const m = NAME.exec(name);
    let orphaned: boolean;
    if (m) {
      if (m[1] !== hostTag(currentOwner.host)) continue; // another host's: not ours to judge
      orphaned = !ownerAlive({ host: currentOwner.host, pid: Number(m[2]), start: m[3]! });
    } else {
      const st = await fs.promises.stat(path.join(base, name)).catch(() => null);
      orphaned = Boolean(st && Date.now() - st.mtimeMs > UNOWNED_MAX_AGE_MS);
    }
    if (!orphaned) continue;
    await fs.promises.rm(path.join(base, name), { recursive: true, force: true });
    removed++;
  }
  return removed;
}
