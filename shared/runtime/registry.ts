// A small client for a Docker Distribution (v2) registry's HTTP API: enough to check that a push
// landed and to delete the images of versions that retention has pruned. No auth: the platform's
// registry is a private, no-auth one (127.0.0.1:5000 here, `registry:2` in docker-compose).

const DEFAULT_TIMEOUT_MS = 10_000;
/** Catalog/tag pages are followed through the Link header; this bounds a misbehaving server. */
const MAX_PAGES = 1_000;
const PAGE_SIZE = 1_000;

// Without an Accept header the registry answers with a schema1 manifest, whose digest is not the
// stored one: a DELETE with it gets a 404 and the image silently stays. Listing every modern media
// type makes the registry report the digest the manifest is stored under.
const MANIFEST_ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

// The distribution spec's grammar; checking it keeps a name from reaching another path of the API.
const REPOSITORY_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export class RegistryError extends Error {
  constructor(
    message: string,
    /** the HTTP status, or null when no answer came (refused, timeout) */
    readonly status: number | null,
  ) {
    super(message);
    this.name = 'RegistryError';
  }
}

export class RegistryClient {
  /** e.g. http://127.0.0.1:5000, without a trailing slash */
  readonly baseUrl: string;
  private readonly timeoutMs: number;

  constructor(
    /** host:port such as 127.0.0.1:5000, optionally with an http:// or https:// prefix */
    readonly registry: string,
    opts: { timeoutMs?: number } = {},
  ) {
    const trimmed = registry.trim().replace(/\/+$/, '');
    if (trimmed === '') throw new Error('RegistryClient: the registry address is empty');
    this.baseUrl = /^https?:\/\//i.test(trimmed) ? trimmed : `http://${trimmed}`;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** true when the registry answers GET /v2/ with 200 (a registry demanding auth answers 401: false) */
  async ping(): Promise<boolean> {
    try {
      const res = await this.fetch('GET', '/v2/');
      await res.body?.cancel();
      return res.status === 200;
    } catch {
      return false;
    }
  }

  /** Every repository name. Repositories whose tags were all deleted may still be listed. */
  async catalog(): Promise<string[]> {
    return this.listPages(`/v2/_catalog?n=${PAGE_SIZE}`, 'repositories', 'list the catalog', null);
  }

  /** The tags of a repository; [] when the repository is unknown or all its tags were deleted. */
  async tags(repository: string): Promise<string[]> {
    checkRepository(repository);
    return this.listPages(`/v2/${repository}/tags/list?n=${PAGE_SIZE}`, 'tags', 'list the tags', repository);
  }

  /** The digest the manifest tagged `tag` (or a digest reference) is stored under; null if absent. */
  async manifestDigest(repository: string, tag: string): Promise<string | null> {
    checkRepository(repository);
    checkReference(tag);
    const what = `read the manifest ${repository}:${tag}`;
    const res = await this.request('HEAD', `/v2/${repository}/manifests/${tag}`, what, repository, {
      Accept: MANIFEST_ACCEPT,
    });
    if (res.status === 404) return null;
    if (res.status !== 200) throw this.statusError(what, repository, res);
    const digest = res.headers.get('docker-content-digest');
    if (!digest) throw new RegistryError(`${this.describe(repository)}: ${what}: no Docker-Content-Digest header in the answer`, res.status);
    return digest;
  }

  /**
   * Deletes the manifest `tag` points to; true if deleted, false if the tag was not there.
   * The v2 API deletes manifests, not tags: every other tag of the same repository pointing to the
   * same manifest goes with it. The platform gives each version its own repository, so that is fine.
   * Disk space is only reclaimed by the registry's garbage collection.
   */
  async deleteTag(repository: string, tag: string): Promise<boolean> {
    const digest = await this.manifestDigest(repository, tag);
    if (digest === null) return false;
    const what = `delete the manifest ${repository}:${tag} (${digest})`;
    const res = await this.request('DELETE', `/v2/${repository}/manifests/${digest}`, what, repository);
    await res.body?.cancel();
    if (res.status === 202) return true;
    // Someone else deleted it between the HEAD and the DELETE: the outcome the caller wanted.
    if (res.status === 404) return false;
    if (res.status === 405) {
      throw new RegistryError(
        `${this.describe(repository)}: ${what}: HTTP 405, deletes are disabled on this registry (storage.delete.enabled / REGISTRY_STORAGE_DELETE_ENABLED=true)`,
        405,
      );
    }
    throw this.statusError(what, repository, res);
  }

  private async listPages(
    firstPath: string,
    key: 'repositories' | 'tags',
    what: string,
    repository: string | null,
  ): Promise<string[]> {
    const out: string[] = [];
    let next: string | null = firstPath;
    for (let page = 0; next !== null; page++) {
      if (page >= MAX_PAGES) throw new RegistryError(`${this.describe(repository)}: ${what}: more than ${MAX_PAGES} pages`, null);
      const res = await this.request('GET', next, what, repository, { Accept: 'application/json' });
      if (res.status === 404 && repository !== null) {
        await res.body?.cancel();
        return [];
      }
      if (res.status !== 200) throw this.statusError(what, repository, res);
      const body: unknown = await res.json().catch(() => undefined);
      const items = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[key] : undefined;
      // A repository whose tags were all deleted answers {"name": …, "tags": null}.
      if (items !== null) {
        if (!Array.isArray(items) || !items.every((i) => typeof i === 'string')) {
          throw new RegistryError(`${this.describe(repository)}: ${what}: unexpected answer (no "${key}" list)`, res.status);
        }
        out.push(...items);
      }
      next = nextLink(res.headers.get('link'));
    }
    return out;
  }

  /** fetch, with network failures and timeouts turned into errors naming the registry */
  private async request(
    method: string,
    path: string,
    what: string,
    repository: string | null,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    try {
      return await this.fetch(method, path, headers);
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const reason =
        e.name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
      throw new RegistryError(`${this.describe(repository)}: ${what}: ${method} ${path} failed: ${reason}`, null);
    }
  }

  private fetch(method: string, path: string, headers: Record<string, string> = {}): Promise<Response> {
    // The Link header is relative to the registry (</v2/_catalog?last=x&n=100>); the URL API resolves
    // it, and an absolute one pointing elsewhere is refused rather than followed.
    const url = new URL(path, `${this.baseUrl}/`);
    if (url.origin !== new URL(this.baseUrl).origin) {
      return Promise.reject(new Error(`refusing to follow a link to another origin (${url.origin})`));
    }
    return fetch(url, { method, headers, redirect: 'error', signal: AbortSignal.timeout(this.timeoutMs) });
  }

  private describe(repository: string | null): string {
    return repository === null ? `registry ${this.registry}` : `registry ${this.registry}, repository ${repository}`;
  }

  private statusError(what: string, repository: string | null, res: Response): RegistryError {
    void res.body?.cancel().catch(() => undefined);
    return new RegistryError(`${this.describe(repository)}: ${what}: HTTP ${res.status} ${res.statusText}`.trimEnd(), res.status);
  }
}

/**
 * Splits an image reference the way Docker does: the first path component is a registry when it
 * holds a '.' or ':' or is 'localhost'. A missing tag is 'latest'; a digest reference
 * (name@sha256:…) is returned in `tag`, which the client's methods accept as well.
 *   '127.0.0.1:5000/function-abc-v3:latest' → { registry: '127.0.0.1:5000', repository: 'function-abc-v3', tag: 'latest' }
 *   'function-abc-v3:latest'                → { registry: null, repository: 'function-abc-v3', tag: 'latest' }
 */
export function splitImageTag(imageTag: string): { registry: string | null; repository: string; tag: string } {
  const ref = imageTag.trim();
  if (ref === '') throw new Error('splitImageTag: empty image reference');
  let name = ref;
  let tag = 'latest';
  const at = name.indexOf('@');
  if (at !== -1) {
    tag = name.slice(at + 1);
    name = name.slice(0, at);
    // name:tag@digest: the digest is what identifies the image
    const colon = name.lastIndexOf(':');
    if (colon > name.lastIndexOf('/')) name = name.slice(0, colon);
  } else {
    const colon = name.lastIndexOf(':');
    if (colon > name.lastIndexOf('/')) {
      tag = name.slice(colon + 1);
      name = name.slice(0, colon);
    }
  }
  let registry: string | null = null;
  const slash = name.indexOf('/');
  if (slash !== -1) {
    const first = name.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      registry = first;
      name = name.slice(slash + 1);
    }
  }
  if (name === '' || tag === '') throw new Error(`splitImageTag: not an image reference: ${imageTag}`);
  return { registry, repository: name, tag };
}

function checkRepository(repository: string): void {
  if (!REPOSITORY_RE.test(repository)) throw new Error(`not a valid repository name: ${JSON.stringify(repository)}`);
}

function checkReference(reference: string): void {
  if (!TAG_RE.test(reference) && !DIGEST_RE.test(reference)) {
    throw new Error(`not a valid tag or digest: ${JSON.stringify(reference)}`);
  }
}

/** The target of rel="next" in a Link header, or null. */
function nextLink(link: string | null): string | null {
  if (!link) return null;
  for (const part of link.split(',')) {
    const m = /<([^>]*)>\s*;(.*)$/.exec(part.trim());
    if (m && /\brel\s*=\s*"?next"?/i.test(m[2]!)) return m[1]!;
  }
  return null;
}
