// Temporary files of multipart deploys: one known directory under DATA_DIR, so what a killed API
// left behind can be found and removed, and nothing else ever is.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** A file this old is stale whoever wrote it: an upload in progress writes to its file continuously. */
const STALE_MS = 60 * 60 * 1000;

export function uploadTempDir(dataDir: string): string {
  return path.join(dataDir, 'upload-tmp');
}

/** A new temporary path, named after this process so a sweep can tell whether its writer lives. */
export function newUploadTempPath(dataDir: string): string {
  const dir = uploadTempDir(dataDir);
  fs.mkdirSync(dir, { recursive: true });
  return path.join(dir, `${process.pid}-${randomUUID()}.part`);
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes temporary files whose writing process is gone (a SIGKILL mid-upload) or that have not
 * been written to for an hour (a writer on another host sharing DATA_DIR, or a recycled pid).
 * Returns how many were removed.
 */
export async function sweepUploadTemp(dataDir: string, now = Date.now()): Promise<number> {
  const dir = uploadTempDir(dataDir);
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  let removed = 0;
  for (const name of names) {
    const file = path.join(dir, name);
    const pid = Number(/^(\d+)-/.exec(name)?.[1] ?? NaN);
    const stat = await fs.promises.stat(file).catch(() => null);
    if (!stat) continue;
    const orphaned = !Number.isInteger(pid) || !processAlive(pid);
    if (orphaned || now - stat.mtimeMs > STALE_MS) {
      await fs.promises.rm(file, { force: true });
      removed++;
    }
  }
  return removed;
}
