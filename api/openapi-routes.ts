// Every route of the API, one line each, as the OpenAPI document (api/openapi.ts) shows it.
// Request schemas are the very ones the routes validate with; response schemas are in
// openapi-responses.ts. A route added to the API without a line here fails tests/openapi.test.ts,
// which names it. To document one:
//
//   route('GET /api/status', 'Platform status', { tag: 'platform', auth: 'bearer', responses: { 200: r.statusView } }),
//
// Errors: the ones its kind implies are added for you (impliedErrors: 401 for auth 'bearer', 404
// function_not_found under /api/functions/:id, 400s for a body or a query, 413, 500, 503); list
// the route's own in `errors`. A non-JSON answer: { contentType: 'text/plain' } in place of a schema.
import { z } from 'zod';
import { loginSchema, registerSchema } from './routes/auth.ts';
import { approveSchema } from './routes/delivery.ts';
import { deployJsonSchema, multipartFields } from './routes/deploy.ts';
import { historyQuery } from './routes/deployments.ts';
import { invocationsQuery, invokeQuery } from './routes/invoke.ts';
import { createKeySchema } from './routes/keys.ts';
import { logsQuery } from './routes/logs.ts';
import { eventsStreamQuery } from './routes/events-stream.ts';
import { metricsQuery } from './routes/metrics.ts';
import { rollbackSchema } from './routes/rollback.ts';
import { sessionSignInSchema } from './routes/session.ts';
import { createTokenSchema } from './routes/tokens.ts';
import { uploadQuery } from './routes/uploads.ts';
import { patchFunctionSchema } from './routes/functions.ts';
import { canaryRequestSchema } from '../shared/domain/canary.ts';
import { configPatchSchema } from '../shared/domain/release-config.ts';
import { setTagSchema } from '../shared/domain/tags.ts';
import { trafficSchema } from '../shared/domain/traffic.ts';
import type { ErrorCode } from '../shared/errors.ts';
import * as r from './openapi-responses.ts';
import { route, type HttpMethod, type RouteDoc } from './openapi.ts';

const fn = 'functions';
const delivery = 'delivery';
const watch = 'observing';
const bearer = 'bearer' as const;

/** The answer of POST …/rollback and …/approve: live at once, or restored from its archive first. */
const liveOrRestoring = { 200: r.versionLiveView, 202: r.versionRestoringView };
/** Choosing a version that must exist and be built. */
const builtVersion: ErrorCode[] = ['version_not_found', 'version_not_built'];

const multipartDeploy = {
  contentType: 'multipart/form-data',
  schema: multipartFields.extend({
    archive: z.string().meta({ format: 'binary', contentMediaType: 'application/gzip', description: 'the function, a .tar.gz' }),
  }),
};

// ---------------------------------------------------------------- endpoints (outside Hono)

const ENDPOINT_METHODS: HttpMethod[] = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];
const endpointParams = {
  handle: z.string().meta({ description: "the owner's handle" }),
  name: z.string().meta({ description: 'the function\'s name; `name@v3` pins version 3, `name@beta` the version tagged beta (owner or key only)' }),
  path: z.string().meta({ description: 'the rest of the path, slashes included, as the function sees it' }),
};
const endpointErrors: ErrorCode[] = [
  'function_not_found',
  'unauthorized',
  'payload_too_large',
  'no_active_deployment',
  'version_not_found',
  'version_not_built',
  'tag_not_found',
  'invalid_json',
  'function_error',
  'function_crashed',
  'function_timeout',
  'capacity_exceeded',
  'quota_exceeded',
  'image_rebuilding',
  'driver_mismatch',
];
const endpointDescription =
  "The function's own HTTP answer, streamed as produced, with X-Request-Id and X-Function-Version. Access follows the function's " +
  'mode: private (the owner\'s bearer token), key (a function key as X-Function-Key or a bearer fk_… token) or public. With ' +
  'FUNCTIONS_DOMAIN set, every path of {name}--{handle}.{FUNCTIONS_DOMAIN} is served the same way. Platform errors carry X-ContainerPub-Error.';
const endpointRoutes = (path: string): RouteDoc[] =>
  ENDPOINT_METHODS.map((m) =>
    route(`${m} ${path}`, 'Call a function over HTTP', {
      tag: 'endpoints',
      auth: 'endpoint',
      description: endpointDescription,
      params: endpointParams,
      body: { contentType: '*/*', description: 'forwarded to the function as sent' },
      bodyRequired: false,
      responses: {},
      passthrough: true,
      outsideHono: true,
      errors: endpointErrors,
    }),
  );

export const routeDocs: RouteDoc[] = [
  route('GET /healthz', 'The process answers', { tag: 'platform', auth: 'none', responses: { 200: r.healthView } }),
  route('GET /readyz', 'Each dependency (database, S3, the engine, the registry) answers, with its latency', {
    tag: 'platform',
    auth: 'none',
    responses: { 200: r.readyView, 503: r.notReadyView },
  }),
  route('GET /metrics', 'Prometheus metrics (text exposition format)', {
    tag: 'platform',
    auth: 'none',
    description: 'With METRICS_TOKEN set, `Authorization: Bearer <METRICS_TOKEN>` is required (401 otherwise).',
    responses: { 200: { contentType: 'text/plain' } },
    errors: ['unauthorized'],
  }),
  route('GET /api/status', 'The platform: version, database, S3, driver, live runners and the build queue', { tag: 'platform', auth: bearer, responses: { 200: r.statusView } }),
  route('GET /openapi.json', 'This document', { tag: 'platform', auth: 'none', responses: { 200: { contentType: 'application/json' } } }),
  route('GET /docs', 'An interactive reference of this document', { tag: 'platform', auth: 'none', responses: { 200: { contentType: 'text/html' } } }),

  // accounts
  route('POST /api/auth/register', 'Create an account, and a token for it', {
    tag: 'accounts', auth: 'none', body: registerSchema, responses: { 201: r.registeredView },
    errors: ['email_taken', 'handle_taken', 'registration_closed', 'rate_limited'],
  }),
  route('POST /api/auth/login', 'A new token for an account', {
    tag: 'accounts', auth: 'none', body: loginSchema, responses: { 200: r.sessionView }, errors: ['invalid_credentials', 'rate_limited'],
  }),
  route('GET /api/auth/me', 'The caller\'s account', { tag: 'accounts', auth: bearer, responses: { 200: r.accountView }, errors: ['not_found'] }),
  route('GET /api/auth/tokens', 'The caller\'s tokens', { tag: 'accounts', auth: bearer, responses: { 200: r.tokenList } }),
  route('POST /api/auth/tokens', 'Issue a token (shown once)', { tag: 'accounts', auth: bearer, body: createTokenSchema, responses: { 201: r.issuedToken } }),
  route('DELETE /api/auth/tokens/:id', 'Revoke a token', {
    tag: 'accounts', auth: bearer, params: { id: z.string().meta({ description: 'the token id (UUID)' }) }, responses: { 204: null }, errors: ['not_found'],
  }),
  route('POST /api/auth/logout', 'Revoke the token of this request', { tag: 'accounts', auth: bearer, responses: { 204: null } }),

  // the dashboard's browser session: a cookie rather than a token the page could read
  route('POST /api/auth/session', 'Sign in from the browser: sets the session cookie', {
    tag: 'dashboard',
    auth: 'none',
    description:
      'Same checks and rate limit as POST /api/auth/login. Sets `cp_session` (HttpOnly; SameSite=Strict; Path=/; Max-Age the token lifetime; ' +
      'Secure over https). An Origin header, if sent, must be this site.',
    body: sessionSignInSchema,
    responses: { 200: r.browserSessionView },
    errors: ['invalid_credentials', 'rate_limited', 'csrf_failed', 'not_found'],
  }),
  route('GET /api/auth/session', 'Who the session cookie belongs to, with its csrfToken', {
    tag: 'dashboard', auth: 'session', description: 'Authenticated by the `cp_session` cookie only.', responses: { 200: r.browserSessionView }, errors: ['not_found'],
  }),
  route('DELETE /api/auth/session', 'Sign out: revoke the session and clear its cookie', {
    tag: 'dashboard', auth: 'session', description: 'Authenticated by the `cp_session` cookie; needs X-CSRF-Token.', responses: { 204: null },
    errors: ['not_found'],
  }),
  route('GET /', 'The dashboard (a web page)', {
    tag: 'dashboard',
    auth: 'none',
    description: 'Sent with a Content-Security-Policy that allows only this origin, and an ETag (If-None-Match → 304).',
    responses: { 200: { contentType: 'text/html' }, 304: null },
    errors: ['not_found'],
  }),
  route('GET /ui/*', "The dashboard's files: its scripts, styles and images, and the browser libraries it uses (/ui/vendor/…)", {
    tag: 'dashboard',
    auth: 'none',
    params: { path: z.string().meta({ description: 'a file under api/ui/ (.js, .css, .html, .svg, .png, .ico), or vendor/htm-preact.js, vendor/uplot.js, vendor/uplot.css' }) },
    responses: { 200: { contentType: '*/*', description: 'the file, with its type' }, 304: null },
    errors: ['not_found'],
  }),

  // deploying
  route('POST /api/functions/deploy', 'Deploy a new version', {
    tag: fn,
    auth: bearer,
    description:
      'JSON: declare the archive (sizeBytes, sha256) and get an upload URL; PUT the archive there, then POST …/deployments/{version}/complete. ' +
      'Multipart: send the archive itself (fields name, archive, config, metadata, activate). A function named "deploy" is reached by its id for POST.',
    body: [deployJsonSchema, multipartDeploy],
    responses: { 201: z.union([r.presignedDeployView, r.deployedView]) },
    errors: ['unsupported_media_type', 'quota_exceeded', 'no_active_deployment'],
  }),
  route('PUT /api/uploads/:deploymentId', 'Upload an archive (the URL handed out while S3 is embedded)', {
    tag: fn,
    auth: 'signature',
    description: 'The URL from POST /api/functions/deploy, used as is: its signature is the credential. Send exactly the declared bytes.',
    query: uploadQuery,
    body: { contentType: 'application/gzip', schema: z.string().meta({ format: 'binary' }) },
    responses: { 200: r.uploadStoredView },
    errors: ['upload_url_invalid', 'upload_expired', 'upload_used', 'size_mismatch', 'checksum_mismatch', 'not_found'],
  }),
  route('POST /api/functions/:id/deployments/:version/complete', 'The archive is uploaded: build it', {
    tag: fn, auth: bearer, responses: { 202: r.completeView },
    errors: ['version_not_found', 'upload_expired', 'upload_missing', 'checksum_mismatch', 'size_mismatch', 'conflict', 'quota_exceeded'],
  }),

  // functions
  route('GET /api/functions', 'The caller\'s functions', { tag: fn, auth: bearer, responses: { 200: r.functionList } }),
  route('GET /api/functions/:id', 'A function', { tag: fn, auth: bearer, responses: { 200: r.functionView } }),
  route('PATCH /api/functions/:id', 'Set its access mode or approval rule', { tag: fn, auth: bearer, body: patchFunctionSchema, responses: { 200: r.functionView } }),
  route('DELETE /api/functions/:id', 'Delete a function, its versions and their artifacts', { tag: fn, auth: bearer, responses: { 204: null } }),
  route('GET /api/functions/:id/config', 'The configuration of the live (else latest) version', { tag: fn, auth: bearer, responses: { 200: r.currentConfigView } }),
  route('PATCH /api/functions/:id/config', 'Change the configuration: a new version, no rebuild', {
    tag: fn, auth: bearer, body: configPatchSchema, responses: { 202: r.configChangeView }, errors: ['no_active_deployment', 'quota_exceeded'],
  }),
  route('GET /api/functions/:id/deployments', 'Version history, newest first', { tag: fn, auth: bearer, query: historyQuery, responses: { 200: r.deploymentHistory } }),
  route('GET /api/functions/:id/deployments/:version', 'A version, with its build logs', {
    tag: fn, auth: bearer, responses: { 200: r.deploymentDetailView }, errors: ['version_not_found'],
  }),
  route('GET /api/functions/:id/deployments/:a/compare/:b', 'What changed from version a to version b', {
    tag: fn, auth: bearer, responses: { 200: r.comparisonView }, errors: ['version_not_found'],
  }),
  route('POST /api/functions/:id/rollback', 'Make an earlier version live', {
    tag: fn, auth: bearer, body: rollbackSchema, responses: liveOrRestoring, errors: [...builtVersion, 'archive_gone', 'conflict', 'canary_running'],
  }),

  // progressive delivery
  route('PUT /api/functions/:id/traffic', 'Split traffic with a candidate version', {
    tag: delivery, auth: bearer, body: trafficSchema, responses: { 200: r.functionView },
    errors: [...builtVersion, 'no_active_deployment', 'canary_running', 'conflict'],
  }),
  route('DELETE /api/functions/:id/traffic', 'End the split', { tag: delivery, auth: bearer, responses: { 200: r.functionView }, errors: ['canary_running'] }),
  route('POST /api/functions/:id/promote', 'The candidate becomes the live version', {
    tag: delivery, auth: bearer, responses: { 200: r.promotedView }, errors: ['no_candidate', 'version_not_built'],
  }),
  route('POST /api/functions/:id/approve', 'A version that waits for approval goes live', {
    tag: delivery, auth: bearer, body: approveSchema, responses: liveOrRestoring, errors: [...builtVersion, 'archive_gone', 'conflict', 'canary_running'],
  }),
  route('GET /api/functions/:id/tags', 'Its tags', { tag: delivery, auth: bearer, responses: { 200: r.tagList } }),
  route('PUT /api/functions/:id/tags/:tag', 'Point a tag at a version', {
    tag: delivery, auth: bearer, body: setTagSchema, responses: { 200: r.tagView }, errors: builtVersion,
  }),
  route('DELETE /api/functions/:id/tags/:tag', 'Remove a tag', { tag: delivery, auth: bearer, responses: { 204: null }, errors: ['tag_not_found'] }),
  route('POST /api/functions/:id/canary', 'Start a canary release', {
    tag: delivery, auth: bearer, body: canaryRequestSchema, responses: { 201: r.canaryView },
    errors: [...builtVersion, 'canary_running', 'conflict', 'no_active_deployment'],
  }),
  route('GET /api/functions/:id/canary', 'The running canary, else the latest', { tag: delivery, auth: bearer, responses: { 200: r.canaryView }, errors: ['not_found'] }),
  route('DELETE /api/functions/:id/canary', 'Abort the running canary', { tag: delivery, auth: bearer, responses: { 200: r.canaryView }, errors: ['not_found'] }),

  // keys
  route('POST /api/functions/:id/keys', 'Issue a function key (shown once)', { tag: fn, auth: bearer, body: createKeySchema, responses: { 201: r.issuedFunctionKey } }),
  route('GET /api/functions/:id/keys', 'Its keys', { tag: fn, auth: bearer, responses: { 200: r.functionKeyList } }),
  route('DELETE /api/functions/:id/keys/:keyId', 'Revoke a function key', { tag: fn, auth: bearer, responses: { 204: null }, errors: ['not_found'] }),

  // running and observing
  route('POST /api/functions/:id/invoke', 'Run it with a JSON event', {
    tag: 'running',
    auth: bearer,
    description: 'The live version (or the candidate, for its share; X-Traffic-Key keeps a caller on one version), or ?version=N, or ?tag=T.',
    query: invokeQuery,
    body: { contentType: 'application/json', schema: z.unknown().meta({ description: 'the event (any JSON; none: {})' }) },
    bodyRequired: false,
    responses: { 200: r.invokeResultView },
    errors: [...builtVersion, 'invalid_json', 'no_active_deployment', 'tag_not_found', 'function_error', 'function_crashed', 'function_timeout', 'capacity_exceeded', 'quota_exceeded', 'image_rebuilding', 'driver_mismatch'],
  }),
  route('GET /api/functions/:id/invocations', 'What recent invocations printed', { tag: watch, auth: bearer, query: invocationsQuery, responses: { 200: r.invocationList } }),
  route('GET /api/functions/:id/instances', 'Its warm instances in this process', { tag: watch, auth: bearer, responses: { 200: r.instanceList } }),
  route('GET /api/functions/:id/events/stream', 'Live server-sent events: build progress and logs, activations, rollbacks, canary steps, invocations with their logs', {
    tag: watch,
    auth: bearer,
    query: eventsStreamQuery,
    description: 'Resumable: send the last `id:` seen as `Last-Event-ID` (or `?since=`; `since=0` replays everything). Closed after EVENT_STREAM_MAX_SECONDS; the client resumes.',
    responses: { 200: { contentType: 'text/event-stream' } },
    errors: ['capacity_exceeded'],
  }),
  route('GET /api/functions/:id/logs', 'Its event log, newest first', { tag: watch, auth: bearer, query: logsQuery, responses: { 200: r.eventList } }),
  route('GET /api/functions/:id/metrics', 'Requests, errors and latency per version', {
    tag: watch, auth: bearer, query: metricsQuery, responses: { 200: r.metricsView }, errors: ['version_not_found'],
  }),

  ...endpointRoutes('/fn/:handle/:name'),
  ...endpointRoutes('/fn/:handle/:name/*'),
];
