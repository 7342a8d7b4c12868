// Which platform process owns something it left on this machine (an instance, a work directory):
// host, pid, and the pid's start time, so a recycled pid is never taken for a live owner. What a
// dead owner left may be removed by the next process that starts.
import fs from 'node:fs';
import os from 'node:os';

/** A platform process: host, pid and the pid's start time. */
export interface ProcessOwner {
  host: string;
  pid: number;
  start: string;
}

/** The start time of a process (clock ticks since boot), or null when it does not exist. */
function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    if (fs.existsSync('/proc/self/stat')) return null;
    // no procfs (macOS): fall back to "the pid exists"
    try {
      process.kill(pid, 0);
      return 'unknown';
    } catch {
      return null;
    }
  }
}

export const currentOwner: ProcessOwner = {
  host: os.hostname(),
  pid: process.pid,
  start: processStartTime(process.pid) ?? '',
};

/** Whether the owner still runs; owners on other hosts are not ours to judge, so they live. */
export function ownerAlive(owner: ProcessOwner): boolean {
  if (owner.host !== currentOwner.host) return true;
  if (owner.pid === currentOwner.pid && owner.start === currentOwner.start) return true;
  const start = processStartTime(owner.pid);
  return start !== null && (start === owner.start || start === 'unknown');
}

export function encodeOwner(owner: ProcessOwner): string {
  return `${owner.host}/${owner.pid}/${owner.start}`;
}

export function decodeOwner(text: string | undefined): ProcessOwner | null {
  const m = /^(.*)\/(\d+)\/([^/]*)$/.exec(text ?? '');
  return m ? { host: m[1]!, pid: Number(m[2]), start: m[3]! } : null;
}
