// A Node function's dependencies, installed at build time: when the archive has a package.json
// with dependencies, a lockfile and no node_modules, `npm ci --omit=dev --ignore-scripts` runs in a
// sandbox and the result is cached by what decides it (the lockfile, package.json's dependency
// fields, Node's major version, the platform), so a code-only change reuses the same install (and,
// on the docker driver, the same layer digest).
//
// The sandbox holds package.json (its dependency fields only) and the lockfile: never the
// function's code, never its .npmrc (it could name another registry or carry a token). npm runs
// with no install scripts, an environment of its own (none of the platform's secrets), its own
// process group (killed with it when the build is aborted), and with every tarball URL of the
// lockfile pointed at NPM_REGISTRY (replace-registry-host=always): a lockfile cannot make the
// runner fetch from a host of its choosing.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { currentOwner, ownerAlive } from '../process-owner.ts';
import { BuildError, InfrastructureError, type InstalledDependencies } from './types.ts';

export interface InstallDependenciesOptions {
  /** the function's unpacked root */
  root: string;
  /** DATA_DIR/build-cache: installs under deps/, npm's download cache under npm/, sandboxes under tmp/ */
  cacheDir: string;
  /** NPM_REGISTRY */
  npmRegistry: string;
  /** the build's: aborting kills npm */
  signal: AbortSignal;
  /** one line of build output */
  log(line: string): void;
  /** how many installs the cache keeps (the most recently used) */
  maxEntries?: number;
}

/** What npm ci installs with --omit=dev depends on these fields of package.json (and the lockfile). */
const DEPENDENCY_FIELDS = [
  'dependencies',
  'devDependencies',
  'optionalDependencies',
  'peerDependencies',
  'peerDependenciesMeta',
  'bundleDependencies',
  'bundledDependencies',
  'overrides',
] as const;
/** npm's own preference: a shrinkwrap wins over package-lock.json. */
const LOCKFILES = ['npm-shrinkwrap.json', 'package-lock.json'] as const;
export const DEFAULT_MAX_ENTRIES = 50;
/** Build-log lines of npm's output; past them, only a count (its error lines are kept apart). */
const MAX_LOG_LINES = 200;
const MAX_LINE_CHARS = 1000;
/** npm's error lines kept for the build's error message. */
const MAX_ERROR_LINES = 60;
/** npm's codes for a registry it could not reach or that failed: an outage, not the function's fault. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'ERR_SOCKET_TIMEOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'E429',
]);

/**
 * Installs the function's dependencies, or reuses the cached install; null when there is nothing
 * to install (no package.json, no `dependencies`, or the archive ships node_modules).
 * Throws BuildError for the function's own faults (no lockfile, npm's error such as E404) and
 * InfrastructureError('npm', …) when the registry cannot be reached or fails (5xx).
 */
export async function installDependencies(opts: InstallDependenciesOptions): Promise<InstalledDependencies | null> {
  const { root, log } = opts;
  const manifestBytes = await readInside(root, 'package.json');
  if (!manifestBytes) return null;
  const manifest = parseObject(manifestBytes, 'package.json');
  const deps = manifest.dependencies;
  if (deps === undefined || deps === null) return null;
  if (typeof deps !== 'object' || Array.isArray(deps)) throw new BuildError('package.json "dependencies" must be an object');
  if (Object.keys(deps).length === 0) return null;
  if (await exists(path.join(root, 'node_modules'))) {
    log('[containerpub] dependencies: the archive ships node_modules, nothing to install');
    return null;
  }

  let lockName: string | undefined;
  let lockBytes: Buffer | null = null;
  for (const name of LOCKFILES) {
    lockBytes = await readInside(root, name);
    if (lockBytes) {
      lockName = name;
      break;
    }
  }
  if (!lockBytes || !lockName) {
    throw new BuildError(
      'package.json lists dependencies, but the archive has no package-lock.json (or npm-shrinkwrap.json): ' +
        'run `npm install --package-lock-only` in the function\'s directory and deploy again with the lockfile, or ship node_modules',
    );
  }
  checkLockfile(parseObject(lockBytes, lockName), lockName);

  const fields = Object.fromEntries(DEPENDENCY_FIELDS.filter((f) => manifest[f] !== undefined).map((f) => [f, manifest[f]]));
  const key = dependenciesKey(lockName, lockBytes, fields);
  const short = key.slice(0, 12);
  const entry = path.join(opts.cacheDir, 'deps', key);
  const nodeModulesDir = path.join(entry, 'node_modules');

  if (await isDirectory(nodeModulesDir)) {
    await touch(entry);
    log(`[containerpub] dependencies: reusing the cached install ${short} (same ${lockName})`);
    return { nodeModulesDir, key };
  }

  log(`[containerpub] dependencies: npm ci --omit=dev --ignore-scripts from ${displayUrl(opts.npmRegistry)} (${lockName}, key ${short})`);
  const started = Date.now();
  const tmpDir = path.join(opts.cacheDir, 'tmp');
  await fs.promises.mkdir(tmpDir, { recursive: true });
  await sweepSandboxes(tmpDir);
  const sandbox = path.join(tmpDir, sandboxName());
  try {
    const project = path.join(sandbox, 'project');
    const home = path.join(sandbox, 'home');
    await fs.promises.mkdir(project, { recursive: true });
    await fs.promises.mkdir(home);
    // only what decides the install: a `workspaces` or a `scripts` entry has nothing to do here
    await fs.promises.writeFile(path.join(project, 'package.json'), JSON.stringify({ private: true, ...fields }, null, 2) + '\n');
    await fs.promises.writeFile(path.join(project, lockName), lockBytes);
    // npm refuses one file as both: two empty ones
    const userRc = path.join(sandbox, 'user-npmrc');
    const globalRc = path.join(sandbox, 'global-npmrc');
    await fs.promises.writeFile(userRc, '');
    await fs.promises.writeFile(globalRc, '');
    await runNpmCi({ project, home, userRc, globalRc, cacheDir: opts.cacheDir, registry: opts.npmRegistry, signal: opts.signal, log });
    // dependencies that all turned out optional for this platform leave no node_modules behind
    await fs.promises.mkdir(path.join(project, 'node_modules'), { recursive: true });
    await fs.promises.mkdir(path.dirname(entry), { recursive: true });
    if (await placeEntry(project, entry)) {
      log(`[containerpub] dependencies: installed in ${((Date.now() - started) / 1000).toFixed(1)} s, cached as ${short}`);
    } else {
      log(`[containerpub] dependencies: another build cached the same install (${short}) first: using it`);
    }
    await touch(entry);
  } finally {
    await fs.promises.rm(sandbox, { recursive: true, force: true }).catch(() => {});
  }
  await pruneCache(path.dirname(entry), opts.maxEntries ?? DEFAULT_MAX_ENTRIES, key).catch((err) =>
    log(`[containerpub] dependencies: could not prune the cache: ${(err as Error).message}`),
  );
  return { nodeModulesDir, key };
}

/** sha256 over what decides the install; the same inputs give the same key on any runner of the same Node major and platform. */
export function dependenciesKey(lockName: string, lockBytes: Buffer, fields: Record<string, unknown>): string {
  const hash = createHash('sha256');
  hash.update('containerpub-dependencies-1\0');
  hash.update(`node${process.versions.node.split('.')[0]}-${process.platform}-${process.arch}\0`);
  hash.update(`${lockName}\0`);
  hash.update(lockBytes);
  hash.update('\0');
  hash.update(JSON.stringify(fields));
  return hash.digest('hex');
}

// ------------------------------------------------------------------------------------ npm

interface NpmRun {
  project: string;
  home: string;
  userRc: string;
  globalRc: string;
  cacheDir: string;
  registry: string;
  signal: AbortSignal;
  log(line: string): void;
}

/** Proxy and CA settings an operator may need for npm to reach the registry at all. */
const PASSED_THROUGH = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'NODE_EXTRA_CA_CERTS'];

async function runNpmCi(run: NpmRun): Promise<void> {
  if (run.signal.aborted) throw run.signal.reason;
  const npm = npmCommand();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: run.home,
    NODE_ENV: 'production',
    npm_config_cache: path.join(run.cacheDir, 'npm'),
    npm_config_registry: run.registry,
    npm_config_userconfig: run.userRc,
    npm_config_globalconfig: run.globalRc,
    npm_config_replace_registry_host: 'always',
    npm_config_update_notifier: 'false',
    npm_config_logs_max: '0',
    npm_config_progress: 'false',
    npm_config_color: 'false',
    // an unreachable registry is an outage the build queue waits out: no need for npm's minute of retries
    npm_config_fetch_retries: '2',
    npm_config_fetch_retry_mintimeout: '1000',
    npm_config_fetch_retry_maxtimeout: '10000',
    npm_config_fetch_retry_factor: '2',
  };
  for (const name of PASSED_THROUGH) if (process.env[name]) env[name] = process.env[name]!;

  const child = spawn(npm.command, [...npm.args, 'ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--no-update-notifier'], {
    cwd: run.project,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    // its own process group: an abort kills npm and whatever it started
    detached: true,
  });
  const killGroup = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  run.signal.addEventListener('abort', killGroup, { once: true });

  let shown = 0;
  let hidden = 0;
  const errors: string[] = [];
  const tail: string[] = [];
  const onLine = (raw: string) => {
    const line = raw.length > MAX_LINE_CHARS ? `${raw.slice(0, MAX_LINE_CHARS)}…` : raw;
    if (/^npm (error|ERR!)/.test(line) && errors.length < MAX_ERROR_LINES) errors.push(line);
    if (line.trim() === '') return;
    tail.push(line);
    if (tail.length > 5) tail.shift();
    if (shown < MAX_LOG_LINES) {
      shown++;
      run.log(line);
    } else {
      hidden++;
    }
  };
  splitLines(child.stdout, onLine);
  splitLines(child.stderr, onLine);

  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  run.signal.removeEventListener('abort', killGroup);
  if (hidden > 0) run.log(`[containerpub] … ${hidden} more lines of npm output not shown`);
  if (run.signal.aborted) throw run.signal.reason;
  if (exit.error) throw new Error(`could not run npm (${npm.command}): ${exit.error.message}`);
  if (exit.code === 0) return;
  // npm failing before it set up its logging prints no "npm error" lines: its last words then
  throw npmFailure(errors.length > 0 ? errors : tail, exit);
}

/** npm's error, as the build's error: the function's fault, unless the registry was unreachable or failing. */
export function npmFailure(errorLines: string[], exit: { code: number | null; signal: NodeJS.Signals | null }): Error {
  const lines = errorLines.map((l) => l.replace(/^npm (error|ERR!) ?/, '').trim());
  if (lines.length > 0 && !errorLines.some((l) => /^npm (error|ERR!)/.test(l))) {
    return new Error(`npm ci failed (exit ${exit.signal ?? exit.code}): ${lines.join(' ').slice(0, 2000)}`);
  }
  const code = lines.map((l) => /^code (\S+)$/.exec(l)?.[1]).find(Boolean);
  const said = lines.filter(
    (l) =>
      l !== '' &&
      !/^code \S+$/.test(l) &&
      !/^(errno|syscall) /.test(l) &&
      !/^\d{3}$/.test(l) &&
      !/^at /.test(l) &&
      !/^[{}]/.test(l) &&
      !/^[\w$]+: ('.*'|\d+|\w+),?$/.test(l) &&
      !/^(Log files were not written|A complete log of this run)/.test(l),
  );
  const message = (said.slice(0, 3).join(' ') || `npm exited with ${exit.signal ?? `code ${exit.code}`} and said nothing`).slice(0, 2000);
  if (code && (NETWORK_CODES.has(code) || /^E5\d\d$/.test(code))) {
    return new InfrastructureError('npm', `the npm registry is unreachable or failing (${code}): ${message}`);
  }
  if (!code && exit.code === null) return new Error(`npm ci was killed (${exit.signal ?? 'no exit code'})`);
  return new BuildError(`npm ci failed${code ? ` (${code})` : ''}: ${message}`);
}

/** The npm of the running Node installation (its npm-cli.js run by this very node), else `npm` on PATH. */
export function npmCommand(): { command: string; args: string[] } {
  const dir = path.dirname(process.execPath);
  for (const cli of [
    path.join(dir, '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'), // Unix layout (bin/node, lib/node_modules)
    path.join(dir, 'node_modules', 'npm', 'bin', 'npm-cli.js'), // Windows layout
  ]) {
    if (fs.existsSync(cli)) return { command: process.execPath, args: [cli] };
  }
  const sibling = path.join(dir, 'npm');
  if (fs.existsSync(sibling)) return { command: sibling, args: [] };
  return { command: 'npm', args: [] };
}

function splitLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    rest += chunk;
    const parts = rest.split(/\r?\n/);
    rest = parts.pop() ?? '';
    // a line that never ends is still bounded
    if (rest.length > MAX_LINE_CHARS * 4) {
      parts.push(rest);
      rest = '';
    }
    for (const line of parts) onLine(line);
  });
  stream.on('end', () => {
    if (rest !== '') onLine(rest);
  });
}

// ------------------------------------------------------------------------------------ the lockfile

/**
 * Only packages from the registry are installed at build time: a git or file dependency would make
 * npm run git against a host of the lockfile's choosing, or read a path outside the sandbox.
 */
function checkLockfile(lock: Record<string, unknown>, lockName: string): void {
  const packages = lock.packages;
  if (packages && typeof packages === 'object') {
    for (const [where, raw] of Object.entries(packages as Record<string, unknown>)) {
      if (where === '' || !raw || typeof raw !== 'object') continue;
      const entry = raw as { link?: unknown; resolved?: unknown };
      if (entry.link === true) {
        throw new BuildError(`${lockName}: ${where} is a link to a local directory (a workspace or a file: dependency), which a build cannot install: ship node_modules instead`);
      }
      checkResolved(entry.resolved, where, lockName);
    }
    return;
  }
  // lockfileVersion 1: a tree of `dependencies`
  const walk = (deps: unknown, trail: string) => {
    if (!deps || typeof deps !== 'object') return;
    for (const [name, raw] of Object.entries(deps as Record<string, unknown>)) {
      if (!raw || typeof raw !== 'object') continue;
      const entry = raw as { version?: unknown; resolved?: unknown; dependencies?: unknown };
      const where = `${trail}${name}`;
      checkResolved(entry.resolved, where, lockName);
      if (typeof entry.version === 'string' && /^(file|link|git|git\+\w+|github|https?):/.test(entry.version)) checkResolved(entry.version, where, lockName);
      walk(entry.dependencies, `${where} > `);
    }
  };
  walk(lock.dependencies, '');
}

function checkResolved(resolved: unknown, where: string, lockName: string): void {
  if (typeof resolved !== 'string' || /^https?:\/\//.test(resolved)) return;
  throw new BuildError(
    `${lockName}: ${where} comes from ${resolved}, not from the npm registry: only registry packages are installed at build time (ship node_modules for git or file dependencies)`,
  );
}

// ------------------------------------------------------------------------------------ the cache

/** Moves the installed project to its cache entry; false when another build put one there first. */
async function placeEntry(project: string, entry: string): Promise<boolean> {
  try {
    await fs.promises.rename(project, entry);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw err;
  }
}

/** Keeps the `keep` most recently used entries (their mtime, touched on each use); never `current`. */
export async function pruneCache(depsDir: string, keep: number, current?: string): Promise<number> {
  const names = (await fs.promises.readdir(depsDir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n));
  if (names.length <= keep) return 0;
  const dated = await Promise.all(
    names.map(async (name) => ({ name, mtime: (await fs.promises.stat(path.join(depsDir, name)).catch(() => null))?.mtimeMs ?? 0 })),
  );
  dated.sort((a, b) => b.mtime - a.mtime);
  const tmpDir = path.join(path.dirname(depsDir), 'tmp');
  await fs.promises.mkdir(tmpDir, { recursive: true });
  let removed = 0;
  for (const { name } of dated.slice(keep)) {
    if (name === current) continue;
    // out of sight first (a rename), so no build takes a half-removed entry for a complete one
    const doomed = path.join(tmpDir, `${sandboxName()}-old`);
    try {
      await fs.promises.rename(path.join(depsDir, name), doomed);
    } catch {
      continue; // another build removed it first
    }
    await fs.promises.rm(doomed, { recursive: true, force: true });
    removed++;
  }
  return removed;
}

const hostTag = createHash('sha256').update(currentOwner.host).digest('hex').slice(0, 8);
const SANDBOX = /^s-([0-9a-f]{8})-(\d+)-(\d*)-/;

/** A sandbox names its owner, so one a dead runner left behind can be told from one in use. */
function sandboxName(): string {
  return `s-${hostTag}-${currentOwner.pid}-${currentOwner.start}-${randomBytes(6).toString('hex')}`;
}

async function sweepSandboxes(tmpDir: string): Promise<void> {
  for (const name of await fs.promises.readdir(tmpDir).catch(() => [] as string[])) {
    const m = SANDBOX.exec(name);
    if (!m || m[1] !== hostTag) continue;
    if (ownerAlive({ host: currentOwner.host, pid: Number(m[2]), start: m[3]! })) continue;
    await fs.promises.rm(path.join(tmpDir, name), { recursive: true, force: true }).catch(() => {});
  }
}

// ------------------------------------------------------------------------------------ helpers

/** A regular file of the function (not a symlink leading out of it), or null. */
async function readInside(root: string, name: string): Promise<Buffer | null> {
  const file = path.join(root, name);
  const stat = await fs.promises.lstat(file).catch(() => null);
  if (!stat?.isFile()) return null;
  return fs.promises.readFile(file);
}

function parseObject(bytes: Buffer, name: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new BuildError(`${name} is not valid JSON: ${(err as Error).message}`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new BuildError(`${name} must contain a JSON object`);
  return value as Record<string, unknown>;
}

async function exists(p: string): Promise<boolean> {
  return (await fs.promises.lstat(p).catch(() => null)) !== null;
}

async function isDirectory(p: string): Promise<boolean> {
  return (await fs.promises.stat(p).catch(() => null))?.isDirectory() ?? false;
}

async function touch(p: string): Promise<void> {
  const now = new Date();
  await fs.promises.utimes(p, now, now).catch(() => {});
}

/** A URL fit for a log: without credentials. */
function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '(an invalid URL)';
  }
}
