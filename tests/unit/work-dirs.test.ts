// Build work directories: what a dead runner left is swept, what a live one (this process, or
// another sharing DATA_DIR) works in is not.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildsDir, newBuildWorkDir, sweepBuildWorkDirs } from '../../shared/work-dirs.ts';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-workdirs-'));
test.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

/** The work directory name another process (pid) would have used. */
function dirOf(pid: number, start: string, id: string): string {
  const mine = path.basename(newBuildWorkDir(dataDir, id));
  return mine.replace(/^(w-[0-9a-f]{8})-\d+-\d*-/, `$1-${pid}-${start}-`);
}

const startOf = (pid: number) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
};

test('a dead owner\'s directories go; this process\'s, a live neighbour\'s and a recent unowned one stay', async () => {
  const base = buildsDir(dataDir);
  fs.mkdirSync(base, { recursive: true });
  const mine = newBuildWorkDir(dataDir, 'aaaaaaaa-mine');
  fs.mkdirSync(mine);
  fs.writeFileSync(path.join(mine, 'index.mjs'), 'x');

  const neighbour = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  const alive = path.join(base, dirOf(neighbour.pid!, startOf(neighbour.pid!), 'bbbbbbbb-live'));
  fs.mkdirSync(alive);

  const gone = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  const deadPid = Number(gone.stdout.trim());
  const dead = path.join(base, dirOf(deadPid, '12345', 'cccccccc-dead'));
  fs.mkdirSync(path.join(dead, 'node_modules'), { recursive: true });

  const oldUnowned = path.join(base, 'd1e2f3-legacy-old');
  fs.mkdirSync(oldUnowned);
  const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
  fs.utimesSync(oldUnowned, twoHoursAgo, twoHoursAgo);
  const newUnowned = path.join(base, 'd1e2f3-legacy-new');
  fs.mkdirSync(newUnowned);

  try {
    assert.is(await sweepBuildWorkDirs(dataDir), 2);
    assert.equal(fs.readdirSync(base).sort(), [path.basename(alive), path.basename(mine), path.basename(newUnowned)].sort());
  } finally {
    neighbour.kill('SIGKILL');
  }
});

test('no builds directory: nothing to do', async () => {
  assert.is(await sweepBuildWorkDirs(path.join(dataDir, 'nowhere')), 0);
});

test.run();
