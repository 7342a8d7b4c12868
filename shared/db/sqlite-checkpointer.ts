// SQLite only: the WAL checkpoint, moved off the event loop. By default the connection that commits
// the 1,000th page of the WAL copies it back into the database file (and syncs it) inside that
// commit, on the event loop: a stall of tens of milliseconds every few hundred deploys, which every
// request of the moment waits out, and CPU the event loop spends on nothing else. Here a worker
// thread with a connection of its own runs PASSIVE checkpoints (they never block readers or
// writers) every CHECKPOINT_EVERY_MS, and the serving connection's own threshold is raised, so it
// checkpoints only if the worker falls far behind or dies: the WAL stays bounded either way.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

const CHECKPOINT_EVERY_MS = 100;
/** The serving connection's own threshold (pages), the safety net: ~40 MB of WAL. */
export const SERVING_AUTOCHECKPOINT_PAGES = 10_000;

/** What the last checkpoint reported: frames in the WAL, and how many of them are in the database file. */
export interface CheckpointResult {
  walFrames: number;
  checkpointedFrames: number;
}

export interface Checkpointer {
  last(): CheckpointResult | null;
  close(): Promise<void>;
}

// plain CommonJS run by the worker (no TypeScript loader in a worker thread)
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.filename, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try {
    const [r] = checkpoint.all();
    if (r && r.log > 0) parentPort.postMessage({ walFrames: r.log, checkpointedFrames: r.checkpointed });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
}, workerData.everyMs);
parentPort.on('message', (m) => {
  if (m === 'close') { clearInterval(timer); db.close(); parentPort.close(); }
});
`;

export function startCheckpointer(filename: string, onError: (message: string) => void): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { filename, driver, everyMs: CHECKPOINT_EVERY_MS } });
  let last: CheckpointResult | null = null;
  worker.on('message', (m: CheckpointResult & { error?: string }) => {
    if (m.error) onError(m.error);
    else last = { walFrames: m.walFrames, checkpointedFrames: m.checkpointedFrames };
  });
  worker.on('error', (err) => onError(err.message));
  // a process that is done (a database it never closed) does not wait for it: after the listeners,
  // which would otherwise keep it referenced
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    last: () => last,
    close: async () => {
      worker.postMessage('close');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 1_000).unref())]);
      await worker.terminate();
    },
  };
}
