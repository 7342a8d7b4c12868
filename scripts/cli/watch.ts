// Watch mode: redeploy the directory on every save. Saves are debounced (a burst makes one
// deploy); one worker runs deploys strictly one after another, and a change that arrives while a
// deploy is running only sets `dirty`, so the latest state is deployed next and never two at
// once. A save that packs to the sha256 already deployed deploys nothing. Errors (API, build,
// packing) are printed and the watcher keeps watching.
// containerpub.json is read on every cycle: its settings go with each deploy as its config, and a
// save that changes only them (same code) is a configuration change of the live version: a new
// version without a rebuild, when the code last deployed is the live code.
import fs from 'node:fs';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { ApiClient, ConfigView } from './api-client.ts';
import { deployPacked, describePacked, followBuild, reportOutcome } from './deploy.ts';
import { isCliError } from './errors.ts';
import { shortSha } from './format.ts';
import type { Output } from './output.ts';
import { IGNORE_FILE, loadIgnoreRules, packDirectory, requireDirectory, type IgnoreRules } from './pack.ts';
import { PROJECT_FILE, readProject, type ProjectConfig } from './project.ts';

/** Whether a version's configuration already has every setting the project file gives. */
export function configSatisfies(view: ConfigView | undefined, wanted: ProjectConfig | undefined): boolean {
  if (!wanted) return true;
  if (!view) return false;
  for (const [key, value] of Object.entries(wanted)) {
    if (key === 'env') {
      for (const [k, v] of Object.entries(value as Record<string, string>)) if (view.env[k] !== v) return false;
    } else if (view[key as keyof ConfigView] !== value) {
      return false;
    }
  }
  return true;
}

const configKey = (c: ProjectConfig | undefined) => JSON.stringify(c ?? null, (_k, v) =>
  v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v,
);

export const DEBOUNCE_MS = 300;

export interface WatchOptions {
  dir: string;
  name: string;
  out: Output;
  maxBytes?: number;
  debounceMs?: number;
  buildTimeoutMs?: number;
}

export class DirectoryWatcher {
  private readonly root: string;
  private rules: IgnoreRules;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** a change arrived that the worker has not packed yet */
  private dirty = false;
  private worker: Promise<void> | null = null;
  private lastSha: string | null = null;
  private lastVersion: number | null = null;
  /** the project settings the last version was given (or already had), as configKey */
  private lastConfig: string | null = null;
  /** the last version deployed is the live one: a settings-only change may reuse its code */
  private lastLive = false;
  /** the version being deployed right now, once the API allocated it */
  private inFlight: { version: number | null } | null = null;
  private closed = false;

  constructor(
    private readonly api: ApiClient,
    private readonly opts: WatchOptions,
  ) {
    this.root = requireDirectory(opts.dir);
    this.rules = loadIgnoreRules(this.root);
  }

  /**
   * Learns what is deployed already (so an unchanged directory is not redeployed on start), starts
   * watching, then runs the first check through the same worker as every later change.
   */
  async start(): Promise<void> {
    const fn = await this.api.findFunction(this.opts.name);
    if (fn) {
      const latest = (await this.api.listDeployments(fn.id, { limit: 1 })).deployments[0];
      // pending_upload: its bytes may never have arrived, so it proves nothing about the files
      if (latest?.sha256 && latest.status !== 'pending_upload') {
        this.lastSha = latest.sha256;
        this.lastVersion = latest.version;
        this.lastLive = latest.isActive;
        // what containerpub.json says now, if the latest version runs with it already
        const project = await this.readProjectOrNull();
        if (project && configSatisfies(latest.config, project.config)) this.lastConfig = configKey(project.config);
      }
    }
    const watcher = watch(this.root, {
      ignoreInitial: true,
      persistent: true,
      // the archive holds symlinks as links, so what they point to is not part of it
      followSymlinks: false,
      ignored: (p: string, stats?: fs.Stats) => this.isIgnored(p, stats),
    });
    this.watcher = watcher;
    watcher.on('all', (event, p) => this.onChange(event, p));
    watcher.on('error', (err) => this.opts.out.error(`watch error: ${(err as Error).message}`));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    this.opts.out.info(`watching ${this.opts.dir} for ${this.opts.name} (Ctrl-C to stop)`);
    this.dirty = true;
    this.drain('initial');
  }

  /** What Ctrl-C says before exiting. */
  describeStop(): string {
    if (!this.inFlight) return 'stopped watching';
    const what = this.inFlight.version === null ? 'a deploy' : `the deploy of ${this.opts.name} v${this.inFlight.version}`;
    return `stopped watching; ${what} was in flight and is abandoned (the server may still build it)`;
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    return this.watcher?.close() ?? Promise.resolve();
  }

  private isIgnored(p: string, stats?: fs.Stats): boolean {
    const rel = path.relative(this.root, p).split(path.sep).join('/');
    if (rel === '' || rel === '..' || rel.startsWith('../')) return false;
    if (rel === IGNORE_FILE) return false; // not packed, but its edits change what is
    if (rel === PROJECT_FILE) return false; // not packed, but its settings go with the deploy
    let isDirectory = stats?.isDirectory();
    if (isDirectory === undefined) {
      try {
        isDirectory = fs.lstatSync(p).isDirectory();
      } catch {
        isDirectory = false;
      }
    }
    return this.rules.ignores(rel, isDirectory);
  }

  private onChange(_event: string, p: string): void {
    if (this.closed) return;
    if (path.relative(this.root, p) === IGNORE_FILE) {
      this.rules = loadIgnoreRules(this.root);
      this.opts.out.info(`${IGNORE_FILE} changed: rules reloaded (directories it stops ignoring are watched after a restart)`);
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.dirty = true;
      this.drain('change');
    }, this.opts.debounceMs ?? DEBOUNCE_MS);
  }

  /** The single worker: at most one running; changes during a deploy are picked up when it ends. */
  private drain(reason: 'initial' | 'change'): void {
    if (this.worker) return;
    this.worker = (async () => {
      let why = reason;
      while (this.dirty && !this.closed) {
        this.dirty = false;
        await this.cycle(why);
        why = 'change';
      }
    })().finally(() => {
      this.worker = null;
      if (this.dirty) this.drain('change');
      else if (!this.timer && !this.closed) this.announceIdle();
    });
  }

  private announceIdle(): void {
    const last = this.lastSha ? `last deployed v${this.lastVersion}, sha256 ${shortSha(this.lastSha)}` : 'nothing deployed yet';
    this.opts.out.info(`watching for changes (${last})`);
  }

  private async cycle(reason: 'initial' | 'change'): Promise<void> {
    const { out, name } = this.opts;
    out.info(reason === 'initial' ? 'checking the directory → packing' : 'change detected → packing');
    try {
      const packed = await packDirectory(this.root, { maxBytes: this.opts.maxBytes });
      const project = await readProject(this.root);
      const settings = configKey(project.config);
      if (packed.sha256 === this.lastSha && (settings === this.lastConfig || !project.config)) {
        out.info(`unchanged (sha256 ${shortSha(packed.sha256)}), nothing to deploy`);
        out.event({ event: 'unchanged', name, sha256: packed.sha256 });
        return;
      }
      if (packed.sha256 === this.lastSha && this.lastLive && project.config) {
        await this.changeSettings(project.config, settings);
        return;
      }
      out.info(describePacked(packed));
      this.inFlight = { version: null };
      const outcome = await deployPacked(this.api, packed, {
        name,
        out,
        config: project.config,
        timeoutMs: this.opts.buildTimeoutMs,
        onVersion: (version) => {
          if (this.inFlight) this.inFlight.version = version;
        },
      });
      // A failed build counts as deployed: the same bytes would fail the same way again.
      this.lastSha = packed.sha256;
      this.lastVersion = outcome.version;
      this.lastConfig = settings;
      this.lastLive = outcome.live;
      reportOutcome(out, outcome);
      out.event({ event: 'deployed', ...outcome });
    } catch (err) {
      // Not recorded as deployed: the next save (even an identical one) tries again.
      const message = isCliError(err) ? err.message : ((err as Error).stack ?? String(err));
      out.error(`error: ${message}`);
      out.event({ event: 'error', name, message });
    } finally {
      this.inFlight = null;
    }
  }

  private async readProjectOrNull() {
    try {
      return await readProject(this.root);
    } catch {
      return null; // reported by the first cycle
    }
  }

  /** Same code, new settings: a configuration change of the live version (no upload, no rebuild). */
  private async changeSettings(config: ProjectConfig, settings: string): Promise<void> {
    const { out, name } = this.opts;
    const fn = await this.api.functionNamed(name);
    const requested = await this.api.changeConfig(fn.id, config);
    this.inFlight = { version: requested.version };
    const label = `${name} v${requested.version}`;
    out.info(`${label}: ${PROJECT_FILE} changed: configuration change (the live code, no rebuild)`);
    const done = await followBuild(this.api, fn.id, requested.version, {
      name,
      out,
      timeoutMs: this.opts.buildTimeoutMs,
      label,
      lastStatus: requested.status,
    });
    this.lastVersion = requested.version;
    this.lastConfig = settings;
    this.lastLive = done.isActive;
    if (done.status === 'failed') out.error(`✘ ${label} failed: ${done.error ?? 'its instance did not get ready'}`);
    else out.info(done.isActive ? `✔ ${label} is live` : `✔ ${label} is ready, but another version is live`);
    out.event({ event: 'configured', name, version: requested.version, status: done.status, live: done.isActive, error: done.error });
  }
}
