// Layers kept on disk between builds, by a key that decides their content: the dependencies layer,
// keyed by the install's key (lockfile, package.json's dependencies, node's major version). A
// code-only change then reuses the .tar.gz as is: no re-tar, no re-gzip, the same digest. (Writing
// it again would give the same digest too, the tar being deterministic; the cache saves the time.)
//
// An entry is <key>.tar.gz plus <key>.json (its digests); the .json is renamed into place last, so
// an entry with one is complete. Builds that make the same entry at once each write their own
// temporary files and the last rename wins, with identical bytes. An entry's mtime is refreshed on
// use, and past `keep` entries the least recently used ones are removed (as the install cache of
// dependencies.ts keeps its 50 most recent installs: a layer whose install is gone is not needed).
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Layer } from './layer.ts';

/** Temporary files of a build that died are removed once this old. */
const STALE_TMP_MS = 60 * 60 * 1000;
const DEFAULT_KEEP = 50;

export class LayerCache {
  constructor(
    private readonly dir: string,
    private readonly keep = DEFAULT_KEEP,
  ) {}

  /** The cached layer of `key`, or the one `make` writes (to the path it is given), then cached. */
  async get(key: string, make: (out: string) => Promise<Layer>): Promise<{ layer: Layer; cached: boolean }> {
    const name = safeName(key);
    const file = path.join(this.dir, `${name}.tar.gz`);
    const meta = path.join(this.dir, `${name}.json`);
    const hit = await this.read(file, meta);
    if (hit) return { layer: hit, cached: true };

    await fs.promises.mkdir(this.dir, { recursive: true });
    await this.sweepStale();
    const tmp = path.join(this.dir, `.tmp-${name}-${randomUUID().slice(0, 8)}`);
    try {
      const made = await make(`${tmp}.tar.gz`);
      const layer: Layer = { ...made, file };
      await fs.promises.writeFile(`${tmp}.json`, JSON.stringify({ digest: layer.digest, diffId: layer.diffId, size: layer.size, entries: layer.entries }));
      await fs.promises.rename(`${tmp}.tar.gz`, file);
      await fs.promises.rename(`${tmp}.json`, meta);
      await this.prune(name);
      return { layer, cached: false };
    } finally {
      await fs.promises.rm(`${tmp}.tar.gz`, { force: true });
      await fs.promises.rm(`${tmp}.json`, { force: true });
    }
  }

  private async read(file: string, meta: string): Promise<Layer | null> {
    let info: Omit<Layer, 'file'>;
    try {
      info = JSON.parse(await fs.promises.readFile(meta, 'utf8'));
    } catch {
      return null;
    }
    const st = await fs.promises.stat(file).catch(() => null);
    // a layer file that is not the size recorded is not trusted: it is made again
    if (!st || st.size !== info.size || typeof info.digest !== 'string' || typeof info.diffId !== 'string') return null;
    const now = new Date();
    await fs.promises.utimes(meta, now, now).catch(() => {});
    return { ...info, file };
  }

  /**
   * Removes the least recently used entries past `keep` (never `current`). A build reading an entry
   * being removed keeps its open file; one that looks it up afterwards makes it again.
   */
  private async prune(current: string): Promise<void> {
    const names = (await fs.promises.readdir(this.dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json') && !n.startsWith('.'));
    if (names.length <= this.keep) return;
    const entries = await Promise.all(
      names.map(async (n) => ({ name: n.slice(0, -'.json'.length), used: (await fs.promises.stat(path.join(this.dir, n)).catch(() => null))?.mtimeMs ?? 0 })),
    );
    entries.sort((a, b) => b.used - a.used);
    for (const { name } of entries.slice(this.keep)) {
      if (name === current) continue;
      // the .json first: an entry without it is not read, whatever is left of its layer
      await fs.promises.rm(path.join(this.dir, `${name}.json`), { force: true });
      await fs.promises.rm(path.join(this.dir, `${name}.tar.gz`), { force: true });
    }
  }

  private async sweepStale(): Promise<void> {
    const names = await fs.promises.readdir(this.dir).catch(() => [] as string[]);
    for (const n of names) {
      if (!n.startsWith('.tmp-')) continue;
      const st = await fs.promises.stat(path.join(this.dir, n)).catch(() => null);
      if (st && Date.now() - st.mtimeMs > STALE_TMP_MS) await fs.promises.rm(path.join(this.dir, n), { force: true });
    }
  }
}

/** A key as a file name: as is when it is one already (a hex hash), else its sha256. */
function safeName(key: string): string {
  return /^[A-Za-z0-9_-]{1,128}$/.test(key) ? key : createHash('sha256').update(key).digest('hex');
}
