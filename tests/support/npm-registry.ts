// A local npm registry for tests (no test may depend on the internet): packages defined in code,
// served as npm's registry API serves them (`GET /<name>`: the packument; `GET /<name>/-/<file>.tgz`:
// the tarball), and the package-lock.json a function depending on them would carry. `npm ci
// --registry <url>` installs from it as from the real one.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { makeTar } from './archives.ts';

export interface FixturePackage {
  name: string;
  version: string;
  /** files of the package, by path inside it (package.json is made from the rest) */
  files?: Record<string, string>;
  /** its own dependencies, name → version (exact versions of other fixture packages) */
  dependencies?: Record<string, string>;
}

interface Published {
  pkg: FixturePackage;
  tgz: Buffer;
  integrity: string;
  shasum: string;
}

export interface NpmRegistryFixture {
  /** with a trailing slash, as NPM_REGISTRY is usually written */
  url: string;
  /** the paths asked for, in order (to tell an install from the cache apart from one over the network) */
  requests: string[];
  /** when set, every request answers this status (a registry outage: 503) */
  failWith: number | null;
  /** adds a package (before the lockfile that names it is written) */
  publish(pkg: FixturePackage): Promise<void>;
  /**
   * The package-lock.json (lockfileVersion 3) of a function named `name` that depends on `deps`
   * (name → version), with what they depend on, hoisted flat. A dependency the registry does not
   * hold gets an entry all the same (its tarball answers 404): what a lockfile made elsewhere holds.
   */
  lockfile(deps: Record<string, string>, name?: string): string;
  /** the package.json that goes with lockfile(deps, name) */
  packageJson(deps: Record<string, string>, name?: string, extra?: Record<string, unknown>): string;
  close(): Promise<void>;
}

/** A package's file name in its tarball URL: the name without its scope. */
const bare = (name: string) => name.replace(/^@[^/]+\//, '');

export async function startNpmRegistry(packages: FixturePackage[] = []): Promise<NpmRegistryFixture> {
  const published = new Map<string, Map<string, Published>>();
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? '/').split('?')[0]!);
    requests.push(url);
    const answer = (status: number, body: unknown, type = 'application/json') => {
      const bytes = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
      res.writeHead(status, { 'content-type': type, 'content-length': bytes.length });
      res.end(bytes);
    };
    if (fixture.failWith !== null) return answer(fixture.failWith, { error: 'the registry is down (test)' });
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(405, { error: 'method not allowed' });
    // /<name>/-/<bare>-<version>.tgz, the name possibly scoped (@scope/name)
    const tarball = /^\/((?:@[^/]+\/)?[^/@]+)\/-\/(.+)\.tgz$/.exec(url);
    if (tarball) {
      const [, name, file] = tarball;
      for (const p of published.get(name!)?.values() ?? []) {
        if (`${bare(name!)}-${p.pkg.version}` === file) return answer(200, p.tgz, 'application/octet-stream');
      }
      return answer(404, { error: 'not found' });
    }
    const versions = published.get(url.slice(1));
    if (!versions) return answer(404, { error: 'Not found' });
    return answer(200, packument(url.slice(1), versions));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

  const tarballUrl = (name: string, version: string) => `${base}${name}/-/${bare(name)}-${version}.tgz`;

  function packument(name: string, versions: Map<string, Published>) {
    const all = [...versions.values()];
    return {
      name,
      'dist-tags': { latest: all[all.length - 1]!.pkg.version },
      versions: Object.fromEntries(
        all.map((p) => [
          p.pkg.version,
          {
            name,
            version: p.pkg.version,
            dependencies: p.pkg.dependencies ?? {},
            dist: { tarball: tarballUrl(name, p.pkg.version), integrity: p.integrity, shasum: p.shasum },
          },
        ]),
      ),
    };
  }

  const fixture: NpmRegistryFixture = {
    url: base,
    requests,
    failWith: null,
    async publish(pkg) {
      const manifest = { name: pkg.name, version: pkg.version, main: 'index.js', dependencies: pkg.dependencies ?? {} };
      const files = { 'package.json': JSON.stringify(manifest, null, 2), ...(pkg.files ?? {}) };
      const tgz = gzipSync(await makeTar(Object.entries(files).map(([file, content]) => ({ name: `package/${file}`, content }))));
      if (!published.has(pkg.name)) published.set(pkg.name, new Map());
      published.get(pkg.name)!.set(pkg.version, {
        pkg,
        tgz,
        integrity: `sha512-${createHash('sha512').update(tgz).digest('base64')}`,
        shasum: createHash('sha1').update(tgz).digest('hex'),
      });
    },
    lockfile(deps, name = 'fn') {
      const packages: Record<string, unknown> = { '': { name, version: '1.0.0', dependencies: deps } };
      const queue = Object.entries(deps);
      while (queue.length > 0) {
        const [dep, version] = queue.shift()!;
        const key = `node_modules/${dep}`;
        if (packages[key]) continue;
        const p = published.get(dep)?.get(version);
        packages[key] = {
          version,
          resolved: tarballUrl(dep, version),
          // a package the registry lacks still needs a well-formed integrity: a lockfile from elsewhere has one
          integrity: p?.integrity ?? `sha512-${createHash('sha512').update(`${dep}@${version}`).digest('base64')}`,
          ...(p?.pkg.dependencies && Object.keys(p.pkg.dependencies).length > 0 ? { dependencies: p.pkg.dependencies } : {}),
        };
        queue.push(...Object.entries(p?.pkg.dependencies ?? {}));
      }
      return JSON.stringify({ name, version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2) + '\n';
    },
    packageJson(deps, name = 'fn', extra = {}) {
      return JSON.stringify({ name, version: '1.0.0', dependencies: deps, ...extra }, null, 2) + '\n';
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  for (const pkg of packages) await fixture.publish(pkg);
  return fixture;
}
