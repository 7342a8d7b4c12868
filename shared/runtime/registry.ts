// A small client for a Docker Distribution (v2) registry's HTTP API: what the daemonless image
// builder needs (blobs: HEAD, cross-repository mount, monolithic upload; manifests: GET, PUT), and
// what retention needs (list tags, delete the images of pruned versions). No auth: the platform's
// registry is a private, no-auth one (127.0.0.1:5000 here, `registry:2` in docker-compose).
//
// Faults are sorted for the build queue: no answer (refused, reset, timed out) or a 5xx/429 is the
// registry's trouble, an InfrastructureError('registry') that the queue waits out; any other
// unexpected status means our request was wrong, a RegistryError that names it.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { InfrastructureError } from './types.ts';

const DEFAULT_TIMEOUT_MS = 10_000;
/** Catalog/tag pages are followed through the Link header; this bounds a misbehaving server. */
const MAX_PAGES = 1_000;
const PAGE_SIZE = 1_000;
/** Manifests and image configs are small JSON documents; more than this is not one of ours. */
const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;

export const MEDIA_TYPE = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

// Without an Accept header the registry answers with a schema1 manifest, whose digest is not the
// stored one: a DELETE with it gets a 404 and the image silently stays. Listing every modern media
// type makes the registry report the digest the manifest is stored under.
const MANIFEST_ACCEPT = [MEDIA_TYPE.dockerManifest, MEDIA_TYPE.ociManifest, MEDIA_TYPE.dockerManifestList, MEDIA_TYPE.ociIndex].join(', ');

// The distribution spec's grammar; checking it keeps a name from reaching another path of the API.
const REPOSITORY_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const SHA256_RE = /^sha256:[0-9a-f]{64}$/;

/** Options of one call: the caller's abort signal (a build's), on top of the client's timeout. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** A manifest as stored: its exact bytes (their sha256 is its digest), media type and digest. */
export interface StoredManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

/** What a blob upload sends: bytes in memory, or a file streamed from disk. */
export type BlobBody = { bytes: Buffer } | { file: string; size: number };

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
      const res = await this.request('GET', '/v2/', 'ping', null);
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
  async manifestDigest(repository: string, tag: string, opts: CallOptions = {}): Promise<string | null> {
    checkRepository(repository);
    checkReference(tag);
    const what = `read the manifest ${repository}:${tag}`;
    const res = await this.request('HEAD', `/v2/${repository}/manifests/${tag}`, what, repository, { Accept: MANIFEST_ACCEPT }, opts);
    if (res.status === 404) return null;
    if (res.status !== 200) throw await this.statusError(what, repository, res);
    const digest = res.headers.get('docker-content-digest');
    if (!digest) throw new RegistryError(`${this.describe(repository)}: ${what}: no Docker-Content-Digest header in the answer`, res.status);
    return digest;
  }

  /** The manifest tagged `tag` (or a digest reference), as stored; null if absent. */
  async getManifest(repository: string, reference: string, opts: CallOptions = {}): Promise<StoredManifest | null> {
    checkRepository(repository);
    checkReference(reference);
    const what = `read the manifest ${repository}:${reference}`;
    const res = await this.request('GET', `/v2/${repository}/manifests/${reference}`, what, repository, { Accept: MANIFEST_ACCEPT }, opts);
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (res.status !== 200) throw await this.statusError(what, repository, res);
    const bytes = await this.documentBytes(res, what, repository);
    const digest = sha256Digest(bytes);
    // a digest reference must name these very bytes: the registry is not trusted to have sent them
    if (DIGEST_RE.test(reference) && reference !== digest) {
      throw new RegistryError(`${this.describe(repository)}: ${what}: the answer's digest is ${digest}`, res.status);
    }
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    return { bytes, mediaType, digest };
  }

  /** Stores `manifest` under `tag`; returns its digest (checked against the registry's). */
  async putManifest(repository: string, tag: string, manifest: { bytes: Buffer; mediaType: string }, opts: CallOptions = {}): Promise<string> {
    checkRepository(repository);
    checkReference(tag);
    const digest = sha256Digest(manifest.bytes);
    const what = `store the manifest ${repository}:${tag} (${digest})`;
    const res = await this.request('PUT', `/v2/${repository}/manifests/${tag}`, what, repository, { 'Content-Type': manifest.mediaType }, {
      ...opts,
      body: { bytes: manifest.bytes },
    });
    if (res.status !== 201) throw await this.statusError(what, repository, res);
    await res.body?.cancel();
    const stored = res.headers.get('docker-content-digest');
    if (stored && stored !== digest) {
      throw new RegistryError(`${this.describe(repository)}: ${what}: the registry stored it as ${stored}`, res.status);
    }
    return digest;
  }

  /** Whether the repository has the blob (a blob of another repository does not count). */
  async blobExists(repository: string, digest: string, opts: CallOptions = {}): Promise<boolean> {
    checkRepository(repository);
    checkDigest(digest);
    const what = `look for the blob ${digest}`;
    const res = await this.request('HEAD', `/v2/${repository}/blobs/${digest}`, what, repository, {}, opts);
    if (res.status !== 200 && res.status !== 404) throw await this.statusError(what, repository, res);
    await res.body?.cancel();
    return res.status === 200;
  }

  /** A blob of bounded size (an image config), checked against its digest. */
  async getBlob(repository: string, digest: string, opts: CallOptions = {}): Promise<Buffer> {
    checkRepository(repository);
    checkDigest(digest);
    const what = `read the blob ${digest}`;
    // a registry on object storage answers with a redirect to it: the digest check below makes
    // following it safe
    const res = await this.request('GET', `/v2/${repository}/blobs/${digest}`, what, repository, {}, { ...opts, redirect: 'follow' });
    if (res.status !== 200) throw await this.statusError(what, repository, res);
    const bytes = await this.documentBytes(res, what, repository);
    if (sha256Digest(bytes) !== digest) {
      throw new RegistryError(`${this.describe(repository)}: ${what}: the bytes sent do not match the digest`, res.status);
    }
    return bytes;
  }

  /**
   * Cross-repository mount: makes `from`'s blob part of `repository` without sending it. When the
   * registry cannot (the blob is gone, or mounts are not supported), its answer opens an upload
   * session instead: its URL is returned for the caller to upload into, or to cancel.
   */
  async mountBlob(repository: string, digest: string, from: string, opts: CallOptions = {}): Promise<{ mounted: true } | { mounted: false; uploadUrl: string }> {
    checkRepository(repository);
    checkRepository(from);
    checkDigest(digest);
    const what = `mount the blob ${digest} from ${from}`;
    const query = new URLSearchParams({ mount: digest, from });
    const res = await this.request('POST', `/v2/${repository}/blobs/uploads/?${query}`, what, repository, { 'Content-Length': '0' }, opts);
    if (res.status !== 201 && res.status !== 202) throw await this.statusError(what, repository, res);
    await res.body?.cancel();
    if (res.status === 201) return { mounted: true };
    return { mounted: false, uploadUrl: this.uploadLocation(res, what, repository) };
  }

  /** Opens an upload session; returns its URL. */
  async startUpload(repository: string, opts: CallOptions = {}): Promise<string> {
    checkRepository(repository);
    const what = 'start a blob upload';
    const res = await this.request('POST', `/v2/${repository}/blobs/uploads/`, what, repository, { 'Content-Length': '0' }, opts);
    if (res.status !== 202) throw await this.statusError(what, repository, res);
    await res.body?.cancel();
    return this.uploadLocation(res, what, repository);
  }

  /**
   * Completes an upload session with the whole blob in one PUT (a monolithic upload). The registry
   * checks the bytes against `digest`; its answer's digest is checked against ours too.
   */
  async uploadBlob(repository: string, uploadUrl: string, digest: string, body: BlobBody, opts: CallOptions = {}): Promise<void> {
    checkRepository(repository);
    checkDigest(digest);
    const what = `upload the blob ${digest}`;
    const url = new URL(uploadUrl, `${this.baseUrl}/`);
    url.searchParams.set('digest', digest);
    const res = await this.request('PUT', url.toString(), what, repository, { 'Content-Type': 'application/octet-stream' }, { ...opts, body });
    if (res.status !== 201) throw await this.statusError(what, repository, res);
    await res.body?.cancel();
    const stored = res.headers.get('docker-content-digest');
    if (stored && stored !== digest) {
      throw new RegistryError(`${this.describe(repository)}: ${what}: the registry stored it as ${stored}`, res.status);
    }
  }

  /** Cancels an upload session (one a refused mount opened); best effort: the registry expires them anyway. */
  async cancelUpload(repository: string, uploadUrl: string): Promise<void> {
    try {
      const res = await this.request('DELETE', uploadUrl, 'cancel a blob upload', repository);
      await res.body?.cancel();
    } catch {
      // an upload session left open is purged by the registry after a while
    }
  }

  /**
   * Deletes the manifest `tag` points to; true if deleted, false if the tag was not there.
   * The v2 API deletes manifests, not tags: every other tag of the same repository pointing to the
   * same manifest goes with it. The platform gives each version its own repository, so that is fine.
   * Disk space is only reclaimed by the registry's garbage collection.
   */
  async deleteTag(repository: string, tag: string, opts: CallOptions = {}): Promise<boolean> {
    const digest = await this.manifestDigest(repository, tag, opts);
    if (digest === null) return false;
    const what = `delete the manifest ${repository}:${tag} (${digest})`;
    const res = await this.request('DELETE', `/v2/${repository}/manifests/${digest}`, what, repository, {}, opts);
    if (res.status === 202 || res.status === 404 || res.status === 405) await res.body?.cancel();
    if (res.status === 202) return true;
    // Someone else deleted it between the HEAD and the DELETE: the outcome the caller wanted.
    if (res.status === 404) return false;
    if (res.status === 405) {
      throw new RegistryError(
        `${this.describe(repository)}: ${what}: HTTP 405, deletes are disabled on this registry (storage.delete.enabled / REGISTRY_STORAGE_DELETE_ENABLED=true)`,
        405,
      );
    }
    throw await this.statusError(what, repository, res);
  }

  private uploadLocation(res: Response, what: string, repository: string): string {
    const location = res.headers.get('location');
    if (!location) throw new RegistryError(`${this.describe(repository)}: ${what}: no Location header in the answer`, res.status);
    return location;
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
      if (res.status !== 200) throw await this.statusError(what, repository, res);
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

  /**
   * fetch, with no answer (refused, reset, past the timeout) turned into an InfrastructureError
   * naming the registry. The timeout is an idle one: it is re-armed by every chunk of an upload's
   * body, so a large layer on a slow link is not cut while it is still moving. An abort by the
   * caller's signal is rethrown as is: the caller decides what its own abort means.
   */
  private async request(
    method: string,
    path: string,
    what: string,
    repository: string | null,
    headers: Record<string, string> = {},
    opts: CallOptions & { body?: BlobBody; redirect?: 'error' | 'follow' } = {},
  ): Promise<Response> {
    // The Link and Location headers may be relative to the registry (</v2/_catalog?last=x&n=100>);
    // the URL API resolves them, and an absolute one pointing elsewhere is refused rather than followed.
    const url = new URL(path, `${this.baseUrl}/`);
    if (url.origin !== new URL(this.baseUrl).origin) {
      throw new RegistryError(`${this.describe(repository)}: ${what}: refusing to follow a link to another origin (${url.origin})`, null);
    }
    const idle = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(new DOMException(`no answer within ${this.timeoutMs} ms`, 'TimeoutError')), this.timeoutMs);
      timer.unref(); // it also covers reading the answer's body, and must not keep the process up after
    };
    arm();
    const signal = opts.signal ? AbortSignal.any([opts.signal, idle.signal]) : idle.signal;
    let body: RequestInit['body'] | undefined;
    if (opts.body && 'bytes' in opts.body) {
      body = opts.body.bytes;
    } else if (opts.body) {
      const file = opts.body.file;
      body = (async function* () {
        for await (const chunk of fs.createReadStream(file, { highWaterMark: 256 * 1024 })) {
          arm();
          yield chunk as Buffer;
        }
      })() as unknown as RequestInit['body'];
      headers = { ...headers, 'Content-Length': String(opts.body.size) };
    }
    try {
      return await fetch(url, {
        method,
        headers,
        body,
        redirect: opts.redirect ?? 'error',
        signal,
        ...(body && !('bytes' in opts.body!) ? { duplex: 'half' } : {}),
      } as RequestInit);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const reason =
        idle.signal.aborted ? `no answer within ${this.timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
      throw new InfrastructureError('registry', `${this.describe(repository)}: ${what}: ${method} ${url.pathname} failed: ${reason}`, { cause: err });
    }
  }

  private describe(repository: string | null): string {
    return repository === null ? `registry ${this.registry}` : `registry ${this.registry}, repository ${repository}`;
  }

  /**
   * The error for an unexpected status: the registry's own trouble (5xx, 429, 408) is an
   * InfrastructureError; anything else says our request was wrong, with the registry's error codes.
   */
  private async statusError(what: string, repository: string | null, res: Response): Promise<Error> {
    let detail = '';
    try {
      const text = (await res.text()).slice(0, 2000);
      const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      detail = (parsed.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
    } catch {
      // no body, or not the registry's JSON error envelope: the status says enough
    }
    const message = `${this.describe(repository)}: ${what}: HTTP ${res.status} ${res.statusText}`.trimEnd() + (detail ? ` (${detail})` : '');
    if (res.status >= 500 || res.status === 429 || res.status === 408) return new InfrastructureError('registry', message);
    return new RegistryError(message, res.status);
  }

  /** A JSON document of bounded size (manifests, configs): its exact bytes. */
  private async documentBytes(res: Response, what: string, repository: string): Promise<Buffer> {
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > MAX_DOCUMENT_BYTES) {
      void res.body?.cancel().catch(() => undefined);
      throw new RegistryError(`${this.describe(repository)}: ${what}: ${declared} bytes, more than a manifest or config can be`, res.status);
    }
    const bytes = Buffer.from(await res.arrayBuffer());
    if (bytes.length > MAX_DOCUMENT_BYTES) {
      throw new RegistryError(`${this.describe(repository)}: ${what}: ${bytes.length} bytes, more than a manifest or config can be`, res.status);
    }
    return bytes;
  }
}

export const sha256Digest = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

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

function checkDigest(digest: string): void {
  if (!SHA256_RE.test(digest)) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)}`);
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
