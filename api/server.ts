// Builds the API for a platform and serves it.
import { serve, type ServerType } from '@hono/node-server';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errors } from '../shared/errors.ts';
import { API_UPLOAD_PATH } from '../shared/storage/upload-urls.ts';
import type { Platform } from '../shared/platform.ts';
import type { Invoker } from '../shared/domain/invoke.ts';
import type { RuntimeDriver } from '../shared/runtime/types.ts';
import { versionDriver } from '../shared/domain/version-driver.ts';
import { appErrorAnswer, createHonoApp, type App } from './http/app.ts';
import { boundTurns, turnsOf } from './http/turns.ts';
import { createTokenCache, requireUser } from './http/auth.ts';
import { JSON_BODY_LIMIT, jsonBodyTooLarge } from './http/body.ts';
import { requireOwnedFunction } from './http/tenant.ts';
import { LiveRoutes } from '../shared/domain/live-routes.ts';
import * as auth from './routes/auth.ts';
import * as dashboard from './routes/dashboard.ts';
import * as session from './routes/session.ts';
import { authAttemptLimit } from './http/rate-limit.ts';
import * as canary from './routes/canary.ts';
import * as compare from './routes/compare.ts';
import * as deploy from './routes/deploy.ts';
import * as deployments from './routes/deployments.ts';
import * as endpoint from './routes/endpoint.ts';
import * as eventsStream from './routes/events-stream.ts';
import { endpointListenerOf } from './routes/endpoint.ts';
import * as keys from './routes/keys.ts';
import { FunctionKeyCache } from '../shared/domain/function-keys.ts';
import * as functions from './routes/functions.ts';
import * as health from './routes/health.ts';
import * as instances from './routes/instances.ts';
import * as invoke from './routes/invoke.ts';
import * as logs from './routes/logs.ts';
import * as metrics from './routes/metrics.ts';
import * as rollback from './routes/rollback.ts';
import * as prometheus from './routes/prometheus.ts';
import * as status from './routes/status.ts';
import { markArrival, observeRequests } from '../shared/observability/http.ts';
import * as delivery from './routes/delivery.ts';
import * as tokens from './routes/tokens.ts';
import * as uploads from './routes/uploads.ts';
import { registerDocs } from './openapi.ts';
import { routeDocs } from './openapi-routes.ts';

export interface ApiOptions {
  /** the runtime driver: deleting a function removes its artifacts with it */
  driver?: RuntimeDriver;
  /** invocations and their warm instances; without it the invoke routes answer 503 */
  invoker?: Invoker;
}

export function createApi(p: Platform, opts: ApiOptions = {}): App {
  const app = createHonoApp(p);
  // first: every request gets its id (and its log lines carry it), and is counted
  app.use('*', observeRequests(p.metrics));
  const turns = boundTurns(app, p.config.server.maxWaitingRequests);
  p.metrics.trackWaitingRequests(() => turns.queued);
  const tokenCache = createTokenCache(p);
  const keyCache = new FunctionKeyCache(p.db, (err) => p.logger.warn('could not record a function key as used', { err: (err as Error)?.message ?? String(err) }));
  const { driver, invoker } = opts;
  // endpoint requests (/fn/…, and with FUNCTIONS_DOMAIN every path of a function host) are taken by
  // a listener serveApi calls ahead of Hono
  if (invoker) endpoint.register(app, p, { invoker, tokens: tokenCache, keys: keyCache });
  else {
    app.all('/fn/*', () => {
      throw errors.unavailable('this API process has no runtime driver configured');
    });
  }
  health.register(app, p, { driver });
  prometheus.register(app, p);
  registerDocs(app, routeDocs);
  dashboard.register(app);
  // JSON bodies are small (JSON_BODY_LIMIT); the multipart deploy, uploads and invocations set
  // their own limits. A declared length over it is refused before a byte is read; readJson bounds
  // the rest as it reads, a chunked body (whose length nobody declared) included.
  app.use('/api/*', async (c, next) => {
    if ((c.req.header('content-type') ?? '').toLowerCase().startsWith('multipart/form-data')) return next();
    if (c.req.path.endsWith('/invoke')) return next();
    if (c.req.path.startsWith(`${API_UPLOAD_PATH}/`)) return next(); // bounded by MAX_ARCHIVE_BYTES there
    const declared = Number(c.req.header('content-length') ?? 0);
    if (declared > JSON_BODY_LIMIT) throw jsonBodyTooLarge(declared);
    return next();
  });
  // one limiter: sign-in through the dashboard and POST /api/auth/login spend the same attempts
  const authAttempts = authAttemptLimit(p.config.auth);
  auth.register(app, p, authAttempts);
  session.register(app, p, { limit: authAttempts, tokens: tokenCache });
  uploads.register(app, p);
  const user = requireUser(p, tokenCache);
  app.use('/api/functions', user);
  app.use('/api/functions/*', user);
  for (const path of ['/api/auth/tokens', '/api/auth/tokens/*', '/api/auth/logout', '/api/auth/me', '/api/status']) app.use(path, user);
  tokens.register(app, p, tokenCache);
  status.register(app, p, { driver });
  // one routing cache per process: the invoker keeps it in step with activations and deletions
  const owned = requireOwnedFunction(p.db, invoker?.routes ?? new LiveRoutes(p.db, () => false));
  app.use('/api/functions/:id', owned);
  app.use('/api/functions/:id/*', owned);
  deploy.register(app, p);
  functions.register(app, p, {
    removeRuntimeArtifacts: driver
      ? async (removed) => {
          // instances first: an image still held by a running container would only be untagged
          await invoker?.manager.dropFunction(removed.functionId);
          for (const d of removed.deployments) {
            const builtBy = versionDriver(d);
            if (builtBy !== driver.name) {
              // the other driver's artifact is out of this process's reach: say so, remove the rest
              p.logger.error('a deleted version was built by another runtime driver: its artifact was left in place', {
                functionId: removed.functionId,
                version: d.version,
                builtBy,
                driver: driver.name,
                imageTag: d.image_tag,
              });
              continue;
            }
            // one version's failure does not keep the others' artifacts
            await driver.removeArtifact({ functionId: removed.functionId, version: d.version, imageTag: d.image_tag }).catch((err: unknown) => {
              p.logger.error('the artifact of a deleted version could not be removed', { functionId: removed.functionId, version: d.version, err });
            });
          }
        }
      : undefined,
  });
  keys.register(app, p, keyCache);
  deployments.register(app, p);
  compare.register(app, p);
  rollback.register(app, p);
  delivery.register(app, p);
  canary.register(app, p);
  logs.register(app, p);
  eventsStream.register(app, p);
  metrics.register(app, p);
  if (invoker) {
    invoke.register(app, p, invoker);
    instances.register(app, invoker);
  } else {
    const noDriver = () => {
      throw errors.unavailable('this API process has no runtime driver configured');
    };
    app.post('/api/functions/:id/invoke', noDriver);
    app.get('/api/functions/:id/instances', noDriver);
  }
  return app;
}

export interface RunningApi {
  url: string;
  port: number;
  /** the Node server (its 'connection' events) */
  server: http.Server;
  /** takes no new connections; requests under way go on */
  stopAccepting(): void;
  /** stops accepting, gives requests under way up to `graceMs`, then drops every connection */
  close(graceMs?: number): Promise<void>;
}

/** The 503 of a request that found as many requests waiting for a turn of the event loop as may wait. */
function refuseBusy(res: ServerResponse, maxWaiting: number): void {
  const a = appErrorAnswer(errors.unavailable(`the API has ${maxWaiting} requests waiting; try again shortly`, 1));
  const body = JSON.stringify(a.body);
  // its body was not read: the connection is not reused
  res.writeHead(a.status, { ...a.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
}

export function serveApi(app: App, opts: { host: string; port: number }): Promise<RunningApi> {
  return new Promise((resolve, reject) => {
    let server: ServerType;
    try {
      // endpoint requests go straight to their Node listener; everything else through Hono; both
      // start in the event loop's turns (turns.ts)
      const endpoints = endpointListenerOf(app);
      const turns = turnsOf(app);
      const createServer = ((options: http.ServerOptions, listener: http.RequestListener) =>
        http.createServer(options, (req, res) => {
          markArrival(req);
          const start = () => {
            // a client that went away while its request waited for a turn gets nothing done for it
            if (req.socket.destroyed) return;
            if (!endpoints?.(req, res)) void listener(req, res);
          };
          if (!turns.admit(start)) refuseBusy(res, turns.maxWaiting);
        })) as typeof http.createServer;
      server = serve({ fetch: app.fetch, hostname: opts.host, port: opts.port, createServer }, (info: AddressInfo) => {
        const host = info.address.includes(':') ? `[${info.address}]` : info.address;
        let closed: Promise<void> | null = null;
        const stopAccepting = () => {
          closed ??= new Promise<void>((res) => server.close(() => res()));
        };
        resolve({
          url: `http://${host}:${info.port}`,
          port: info.port,
          server: server as http.Server,
          stopAccepting,
          async close(graceMs = 0) {
            stopAccepting();
            if (graceMs > 0) {
              let timer: NodeJS.Timeout | undefined;
              await Promise.race([closed, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
              clearTimeout(timer);
            }
            (server as unknown as { closeAllConnections(): void }).closeAllConnections();
            await closed;
          },
        });
      });
      server.on('error', reject);
      // Expect: 100-continue: Node answers 100 at once unless 'checkContinue' is handled, and a
      // client then sends a body the API may refuse unread (413 on Content-Length), to find the
      // connection closed under it. Send the 100 only once the handler starts reading the body.
      server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
        const read = req._read;
        req._read = function (this: IncomingMessage, size: number) {
          req._read = read;
          if (!res.headersSent) res.writeContinue();
          return read.call(this, size);
        };
        server.emit('request', req, res);
      });
    } catch (err) {
      reject(err);
    }
  });
}
