// One client for the ContainerPub API, over node:http (http-exchange.ts says why not fetch). Every
// failure becomes a CliError with a message a person can act on: an unreachable API, a refused
// token, or the API's own error envelope `{error: {code, message}}` (its message is shown as is).
import { ApiError, CliError, EXIT_AUTH } from './errors.ts';
import { exchange, readText, type Answer } from './http-exchange.ts';

// The wire shapes are the API's own view types: one definition on both sides of the HTTP call.
export type { AccessMode as FunctionAccess } from '../../shared/domain/access.ts';
export type { FunctionKeyView as FunctionKey, IssuedFunctionKey } from '../../shared/domain/function-keys.ts';
export type { EventView as EventEntry } from '../../shared/domain/events.ts';
export type { InvocationView as Invocation } from '../../shared/domain/invocation-log.ts';
export type { InvocationResult as InvokeResult } from '../../shared/domain/invoke.ts';
export type { TokenView as ApiToken, IssuedToken } from '../../shared/domain/tokens.ts';
export type { FunctionView as FunctionSummary } from '../../shared/domain/functions.ts';
import type { FunctionView as FunctionSummary } from '../../shared/domain/functions.ts';
import type { AccessMode } from '../../shared/domain/access.ts';
import type { FunctionKeyView as FunctionKey, IssuedFunctionKey } from '../../shared/domain/function-keys.ts';
export type { DeploymentView as Deployment, DeploymentDetailView as DeploymentDetail } from '../../shared/domain/deployments.ts';
import type { DeploymentView as Deployment, DeploymentDetailView as DeploymentDetail } from '../../shared/domain/deployments.ts';
export type { TrafficShare } from '../../shared/domain/traffic.ts';
export type { TagView } from '../../shared/domain/tags.ts';
import type { TagView } from '../../shared/domain/tags.ts';
import type { EventView as EventEntry } from '../../shared/domain/events.ts';
import type { InvocationView as Invocation } from '../../shared/domain/invocation-log.ts';
import type { InvocationResult as InvokeResult } from '../../shared/domain/invoke.ts';
import type { InstanceInfo } from '../../shared/runtime/pool.ts';
import type { ConfigPatch, ConfigView, DeployMetadata } from '../../shared/domain/release-config.ts';
import type { ConfigChangeRequested } from '../../shared/domain/config-change.ts';
import type { VersionComparison } from '../../shared/domain/compare.ts';
export type { ConfigPatch, ConfigView, DeployMetadata, ConfigChangeRequested, VersionComparison };
import type { TokenView as ApiToken, IssuedToken } from '../../shared/domain/tokens.ts';

// A record rather than a list, so the compiler checks it against the server's AccessMode both ways
// (without loading the domain module, which brings the database layer with it).
const ACCESS: Record<AccessMode, true> = { private: true, key: true, public: true };
/** Who may call a function's endpoint: its owner's token, a function key (or the owner), anyone. */
export const ACCESS_MODES = Object.keys(ACCESS) as AccessMode[];

/** A warm instance as GET /api/functions/:id/instances sends it (the route leaves out the ids it implies). */
export type WarmInstance = Pick<InstanceInfo, 'id' | 'version' | 'state' | 'startedAt' | 'lastUsedAt' | 'invocations'>;

export interface DeployRequested {
  id: string;
  name: string;
  version: number;
  deploymentId: string;
  status: string;
  isNewFunction: boolean;
  createdAt: string;
  upload: { method: string; url: string; headers: Record<string, string>; expiresAt: string };
}

export interface Session {
  userId: string;
  token: string;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EPIPE',
]);

/** The OS-level code behind a failed request (on the error, or in its `cause`). */
export function networkCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code;
    if (Array.isArray((e as { errors?: unknown[] }).errors)) {
      // AggregateError from happy-eyeballs connection attempts
      for (const inner of (e as { errors: unknown[] }).errors) {
        const code = networkCode(inner);
        if (code) return code;
      }
    }
  }
  return undefined;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | null,
  ) {}

  async request<T>(
    method: string,
    path: string,
    opts: { json?: unknown; query?: Record<string, string | number | undefined>; auth?: boolean; timeoutMs?: number } = {},
  ): Promise<T> {
    const auth = opts.auth ?? true;
    if (auth && !this.token) throw notLoggedIn();
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (auth && this.token) headers.authorization = `Bearer ${this.token}`;
    let body: string | undefined;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let res: Answer;
    let text: string;
    try {
      // the timeout covers the whole exchange, the body's reading included
      const signal = AbortSignal.timeout(timeoutMs);
      res = await exchange(url, { method, headers, body, signal });
      text = await readText(res);
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw new CliError(`the ContainerPub API at ${this.baseUrl} did not answer within ${Math.round(timeoutMs / 1000)} s`);
      }
      if (networkCode(err)) throw new CliError(`cannot reach the ContainerPub API at ${this.baseUrl} (is it running?)`);
      if ((err as { code?: unknown }).code === 'EPROTO') {
        // OpenSSL's own text is a line of internals: https:// to a plain-HTTP port, most likely
        throw new CliError(`cannot reach the ContainerPub API at ${this.baseUrl} (the TLS handshake failed: does it serve HTTPS on that port?)`);
      }
      throw new CliError(`cannot reach the ContainerPub API at ${this.baseUrl} (${(err as Error).message})`);
    }
    let parsed: unknown = null;
    if (text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new ApiError(
          `${this.baseUrl} answered ${res.status} with something that is not the ContainerPub API (is the URL right?)`,
          res.status,
          'not_json',
        );
      }
    }
    if (res.ok) return parsed as T;
    throw this.errorOf(res, parsed, auth);
  }

  /** The CliError for an answer that is not 2xx, from the API's envelope when it sent one. */
  private errorOf(res: Answer, parsed: unknown, auth: boolean): ApiError {
    const envelope = (parsed as { error?: { code?: string; message?: string; details?: Record<string, unknown> } } | null)?.error;
    const code = envelope?.code ?? `http_${res.status}`;
    const message = envelope?.message ?? `the API answered ${res.status} ${res.statusText}`;
    if (res.status === 401 && auth) {
      return new ApiError(
        `the API at ${this.baseUrl} refused the token (${message}): run "containerpub login" (or set CONTAINERPUB_TOKEN)`,
        401,
        code,
      );
    }
    return new ApiError(message, res.status, code, envelope?.details);
  }

  /**
   * Opens a server-sent event stream: the answer once it is 200 (its body is the stream), else the
   * API's error as an ApiError. A network failure is a CliError.
   */
  async openEventStream(path: string, opts: { lastEventId?: string; signal?: AbortSignal } = {}): Promise<Answer> {
    if (!this.token) throw notLoggedIn();
    const headers: Record<string, string> = { accept: 'text/event-stream', authorization: `Bearer ${this.token}` };
    if (opts.lastEventId) headers['last-event-id'] = opts.lastEventId;
    let res: Answer;
    try {
      res = await exchange(new URL(this.baseUrl + path), { headers, signal: opts.signal });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw new CliError(`cannot reach the ContainerPub API at ${this.baseUrl} (is it running?)`);
    }
    if (res.ok && (res.headers['content-type'] ?? '').startsWith('text/event-stream')) return res;
    const text = await readText(res).catch(() => '');
    let parsed: unknown = null;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      /* an older server or a proxy: the status says enough */
    }
    if (res.ok) return Promise.reject(new ApiError(`${path} did not answer with an event stream`, 501, 'not_event_stream'));
    throw this.errorOf(res, parsed, true);
  }

  register(email: string, password: string): Promise<Session> {
    return this.request('POST', '/api/auth/register', { json: { email, password }, auth: false });
  }

  login(email: string, password: string): Promise<Session> {
    return this.request('POST', '/api/auth/login', { json: { email, password }, auth: false });
  }

  async listFunctions(): Promise<FunctionSummary[]> {
    return (await this.request<{ functions: FunctionSummary[] }>('GET', '/api/functions')).functions;
  }

  /** null when this user has no function of that name. */
  async findFunction(name: string): Promise<FunctionSummary | null> {
    return (await this.listFunctions()).find((f) => f.name === name) ?? null;
  }

  /** Resolves a name to its function, or fails with a pointer to `ls`. */
  async functionNamed(name: string): Promise<FunctionSummary> {
    const fn = await this.findFunction(name);
    if (!fn) throw new CliError(`no function named "${name}" (see "containerpub ls")`);
    return fn;
  }

  getFunction(id: string): Promise<FunctionSummary> {
    return this.request('GET', `/api/functions/${id}`);
  }

  async deleteFunction(id: string): Promise<void> {
    await this.request('DELETE', `/api/functions/${id}`);
  }

  /** The account the token belongs to (GET /api/auth/me). */
  me(): Promise<{ userId: string; email: string; handle: string }> {
    return this.request('GET', '/api/auth/me');
  }

  setAccess(id: string, access: AccessMode): Promise<FunctionSummary> {
    return this.request('PATCH', `/api/functions/${id}`, { json: { access } });
  }

  async listFunctionKeys(id: string): Promise<FunctionKey[]> {
    return (await this.request<{ keys: FunctionKey[] }>('GET', `/api/functions/${id}/keys`)).keys;
  }

  createFunctionKey(id: string, name: string): Promise<IssuedFunctionKey> {
    return this.request('POST', `/api/functions/${id}/keys`, { json: { name } });
  }

  async revokeFunctionKey(id: string, keyId: string): Promise<void> {
    await this.request('DELETE', `/api/functions/${id}/keys/${encodeURIComponent(keyId)}`);
  }

  requestDeploy(body: {
    name: string;
    sizeBytes: number;
    sha256: string;
    config?: ConfigPatch;
    metadata?: DeployMetadata;
    /** false: the version is built and waits for approval (never live by itself) */
    activate?: false;
  }): Promise<DeployRequested> {
    return this.request('POST', '/api/functions/deploy', { json: body });
  }

  completeDeploy(id: string, version: number): Promise<{ deploymentId: string; version: number; status: string }> {
    return this.request('POST', `/api/functions/${id}/deployments/${version}/complete`);
  }

  getDeployment(id: string, version: number): Promise<DeploymentDetail> {
    return this.request('GET', `/api/functions/${id}/deployments/${version}`);
  }

  listDeployments(id: string, opts: { limit?: number; before?: number } = {}): Promise<{ deployments: Deployment[]; nextBefore: number | null }> {
    return this.request('GET', `/api/functions/${id}/deployments`, { query: opts });
  }

  /** The live version's configuration (secrets by name only). */
  getConfig(id: string): Promise<ConfigView & { version: number | null }> {
    return this.request('GET', `/api/functions/${id}/config`);
  }

  /** A new version with the live version's code and this change to its configuration. */
  changeConfig(id: string, patch: ConfigPatch): Promise<ConfigChangeRequested> {
    return this.request('PATCH', `/api/functions/${id}/config`, { json: patch });
  }

  compareVersions(id: string, a: number, b: number): Promise<VersionComparison> {
    return this.request('GET', `/api/functions/${id}/deployments/${a}/compare/${b}`);
  }

  rollback(id: string, version: number): Promise<{ message: string; version: number; deploymentId: string }> {
    return this.request('POST', `/api/functions/${id}/rollback`, { json: { version } });
  }

  /** The candidate takes `percent` of the traffic; `sticky` left out keeps the function's setting. */
  setTraffic(id: string, candidate: { version: number; percent: number }, sticky?: boolean): Promise<FunctionSummary> {
    return this.request('PUT', `/api/functions/${id}/traffic`, { json: { candidate, ...(sticky === undefined ? {} : { sticky }) } });
  }

  clearTraffic(id: string): Promise<FunctionSummary> {
    return this.request('DELETE', `/api/functions/${id}/traffic`);
  }

  promote(id: string): Promise<{ message: string; version: number; deploymentId: string; previousVersion: number | null }> {
    return this.request('POST', `/api/functions/${id}/promote`);
  }

  setTag(id: string, tag: string, version: number): Promise<{ tag: string; version: number; deploymentId: string }> {
    return this.request('PUT', `/api/functions/${id}/tags/${encodeURIComponent(tag)}`, { json: { version } });
  }

  async deleteTag(id: string, tag: string): Promise<void> {
    await this.request('DELETE', `/api/functions/${id}/tags/${encodeURIComponent(tag)}`);
  }

  async listTags(id: string): Promise<TagView[]> {
    return (await this.request<{ tags: TagView[] }>('GET', `/api/functions/${id}/tags`)).tags;
  }

  /** A version built without going live (deploy --no-activate, requireApproval) goes live (202 `building`: archived, being restored first). */
  approve(id: string, version: number): Promise<{ message: string; version: number; deploymentId: string; status?: 'building' }> {
    return this.request('POST', `/api/functions/${id}/approve`, { json: { version } });
  }

  invoke(id: string, event: unknown, opts: { version?: number; tag?: string; timeoutMs?: number } = {}): Promise<InvokeResult> {
    return this.request('POST', `/api/functions/${id}/invoke`, {
      json: event,
      query: { version: opts.version, tag: opts.tag },
      timeoutMs: opts.timeoutMs ?? 10 * 60_000,
    });
  }

  async listEvents(id: string, opts: { limit?: number; version?: number } = {}): Promise<EventEntry[]> {
    return (await this.request<{ logs: EventEntry[] }>('GET', `/api/functions/${id}/logs`, { query: opts })).logs;
  }

  async listInvocations(id: string, opts: { limit?: number; version?: number } = {}): Promise<Invocation[]> {
    return (await this.request<{ invocations: Invocation[] }>('GET', `/api/functions/${id}/invocations`, { query: opts })).invocations;
  }

  async listTokens(): Promise<ApiToken[]> {
    return (await this.request<{ tokens: ApiToken[] }>('GET', '/api/auth/tokens')).tokens;
  }

  createToken(name: string, expiresInDays?: number): Promise<IssuedToken> {
    return this.request('POST', '/api/auth/tokens', { json: { name, expiresInDays } });
  }

  async revokeToken(id: string): Promise<void> {
    await this.request('DELETE', `/api/auth/tokens/${encodeURIComponent(id)}`);
  }

  /** Revokes the token this client carries. */
  async logout(): Promise<void> {
    await this.request('POST', '/api/auth/logout');
  }

  /** Only the instances of the API process that answered: each process keeps its own. */
  async listInstances(id: string): Promise<WarmInstance[]> {
    return (await this.request<{ instances: WarmInstance[] }>('GET', `/api/functions/${id}/instances`)).instances;
  }
}

export function notLoggedIn(): CliError {
  return new CliError('not logged in: run "containerpub login" (or set CONTAINERPUB_TOKEN)', EXIT_AUTH);
}
