// The machine a run was measured on: every figure is only meaningful next to this.
import os from 'node:os';
import fs from 'node:fs';
import knexFactory from 'knex';
import Database from 'better-sqlite3';
import { BENCH_PG_URL } from './harness.ts';

export interface Machine {
  date: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  docker: { version: string; apiVersion: string; storageDriver: string } | null;
  postgres: string | null;
  sqlite: string;
  /** 1-minute load average when the run started: other work on the machine skews everything */
  loadAverageAtStart: number;
  loadAverageAtEnd?: number;
}

function osName(): string {
  try {
    const release = fs.readFileSync('/etc/os-release', 'utf8');
    const pretty = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(release)?.[1];
    if (pretty) return `${pretty} (${os.type()} ${os.release()})`;
  } catch {
    // not Linux, or no os-release
  }
  return `${os.type()} ${os.release()}`;
}

export async function describeMachine(opts: { docker: boolean; postgres: boolean }): Promise<Machine> {
  let docker: Machine['docker'] = null;
  if (opts.docker) {
    const { default: Docker } = await import('dockerode');
    const engine = new Docker();
    const [version, info] = await Promise.all([engine.version(), engine.info() as Promise<{ Driver?: string }>]);
    docker = { version: version.Version, apiVersion: version.ApiVersion, storageDriver: info.Driver ?? 'unknown' };
  }
  let postgres: string | null = null;
  if (opts.postgres) {
    const knex = knexFactory({ client: 'pg', connection: BENCH_PG_URL, pool: { min: 0, max: 1 } });
    try {
      const res = await knex.raw('show server_version');
      postgres = String(res.rows[0].server_version);
    } finally {
      await knex.destroy();
    }
  }
  const mem = new Database(':memory:');
  const sqlite = String((mem.prepare('select sqlite_version() as v').get() as { v: string }).v);
  mem.close();
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: osName(),
    node: process.version,
    docker,
    postgres,
    sqlite,
    loadAverageAtStart: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}
