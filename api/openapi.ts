// The OpenAPI 3.1 document, generated from the zod schemas the routes validate with (request) and
// the ones in openapi-responses.ts (response), through zod's own z.toJSONSchema: one source of
// truth, and no second validation layer in front of the handlers, whose errors (validation.ts)
// keep their shape. The routes themselves are listed in openapi-routes.ts, one line each;
// tests/openapi.test.ts fails, naming the route, when Hono's route table and that list part.
//
// The same list answers "is this answer documented?" (checkDocumented), which the integration
// tests' HTTP client asks of every answer it gets.
import fs from 'node:fs';
import { z } from 'zod';
import { AppError, type ErrorCode } from '../shared/errors.ts';
import { FUNCTION_NAME_PATTERN, UUID_PATTERN } from '../shared/domain/model.ts';
import { tagNameSchema } from '../shared/domain/tags.ts';
import type { App } from './http/app.ts';
import { positiveIntString } from './http/validation.ts';

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete' | 'head' | 'options';

/** A body of another type than JSON (text, HTML, a stream): its media type, and a schema if any. */
export interface MediaBody {
  contentType: string;
  schema?: z.ZodType;
  description?: string;
}
/** A response: its JSON schema, another media type, or null for no body (204). */
export type ResponseDoc = z.ZodType | MediaBody | null;

export interface RouteDoc {
  method: HttpMethod;
  /** Hono's form: /api/functions/:id/deployments/:version */
  path: string;
  summary: string;
  description?: string;
  /** the group it is listed under */
  tag: string;
  /**
   * bearer: an API token (or the dashboard's session cookie); session: the session cookie only; none;
   * signature: the URL's own signature; endpoint: the function's access mode
   */
  auth: 'bearer' | 'session' | 'none' | 'signature' | 'endpoint';
  /** path parameters by name; those not given take the default of their name (PATH_PARAMS) */
  params?: Record<string, z.ZodType>;
  query?: z.ZodObject;
  /** the request body: a zod schema is JSON */
  body?: z.ZodType | MediaBody | (z.ZodType | MediaBody)[];
  bodyRequired?: boolean;
  /** answers other than errors, by status */
  responses: Record<number, ResponseDoc>;
  /** error codes besides the ones the route's kind implies (see impliedErrors) */
  errors?: ErrorCode[];
  /** served by the Node listener ahead of Hono (api/routes/endpoint.ts), so not in Hono's routes */
  outsideHono?: boolean;
  /** an answer of any status and type that is not a platform error: the function's own */
  passthrough?: boolean;
}

type Extra = Omit<RouteDoc, 'method' | 'path' | 'summary'>;

/** One route of the document: `route('GET /api/status', 'Platform status', { tag, auth, responses })`. */
export function route(spec: string, summary: string, extra: Extra): RouteDoc {
  const [method, path] = spec.trim().split(/\s+/);
  if (!method || !path?.startsWith('/')) throw new Error(`route("${spec}"): write it as "METHOD /path"`);
  return { method: method.toLowerCase() as HttpMethod, path, summary, ...extra };
}

// ------------------------------------------------------------------------------ parameters

const uuid = z.string().regex(UUID_PATTERN, 'must be a UUID');
const positiveInt = positiveIntString.meta({ description: 'a positive integer' });

/** `:id` of /api/functions/:id…: the function's id, or the name of one of the caller's functions. */
export const functionRefParam = z
  .union([uuid, z.string().regex(FUNCTION_NAME_PATTERN)])
  .meta({ description: "the function's id (UUID), or its name (the caller's own functions: names are unique per user)" });

/** Path parameters by name, used wherever a route does not say otherwise. */
const PATH_PARAMS: Record<string, z.ZodType> = {
  version: positiveInt.meta({ description: 'a version number' }),
  a: positiveInt.meta({ description: 'the version compared from' }),
  b: positiveInt.meta({ description: 'the version compared to' }),
  tag: tagNameSchema,
  keyId: uuid,
  deploymentId: uuid,
};

/** `:name` segments, and a trailing `*` (the rest of the path, slashes included) as `path`. */
function paramNames(path: string): string[] {
  const names = [...path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1]!);
  return path.endsWith('/*') ? [...names, 'path'] : names;
}

function paramSchema(doc: RouteDoc, name: string): z.ZodType {
  const given = doc.params?.[name] ?? (name === 'id' && doc.path.startsWith('/api/functions/') ? functionRefParam : PATH_PARAMS[name]);
  if (!given) throw new Error(`${doc.method.toUpperCase()} ${doc.path}: say what :${name} is (params: { ${name}: schema })`);
  return given;
}

/** /api/functions/:id/deployments/:version → /api/functions/{id}/deployments/{version} */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\/\*$/, '/{path}');
}

// ------------------------------------------------------------------------------ errors

/** The statuses a code is answered with (a quota on work under way is a 429, a standing one a 403). */
function statusesOf(code: ErrorCode): number[] {
  if (code === 'quota_exceeded') return [403, 429];
  return [new AppError(code, '').status];
}

/** The errors a route can answer because of what it is: authenticated, with a body, a function's… */
export function impliedErrors(doc: RouteDoc): ErrorCode[] {
  const codes: ErrorCode[] = ['internal', 'unavailable'];
  if (doc.auth === 'bearer' || doc.auth === 'session') codes.push('unauthorized');
  // the dashboard's session cookie authenticates these too, and its changes need the CSRF proof
  if ((doc.auth === 'bearer' || doc.auth === 'session') && !['get', 'head', 'options'].includes(doc.method)) codes.push('csrf_failed');
  // a JSON body over 1 MiB is refused on every /api route, whatever it is
  if (doc.path.startsWith('/api/')) codes.push('payload_too_large');
  const params = paramNames(doc.path);
  if (params.length > 0) codes.push('bad_request');
  if (params.includes('id') && doc.path.startsWith('/api/functions/')) codes.push('function_not_found');
  if (params.includes('tag') || doc.query) codes.push('validation_failed');
  if ([doc.body ?? []].flat().some((b) => !isMedia(b))) codes.push('bad_request', 'invalid_json', 'validation_failed');
  return codes;
}

export function errorCodesOf(doc: RouteDoc): ErrorCode[] {
  return [...new Set([...impliedErrors(doc), ...(doc.errors ?? [])])];
}

/** The error envelope of api/http/app.ts, with the codes a status can carry. */
export function errorEnvelope(codes?: readonly string[]) {
  return z.strictObject({
    error: z.strictObject({
      code: codes ? z.enum(codes as [string, ...string[]]) : z.string(),
      message: z.string(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  });
}

/** The error statuses of a route, each with the codes it carries. */
export function errorStatuses(doc: RouteDoc): Map<number, ErrorCode[]> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorCodesOf(doc)) {
    for (const status of statusesOf(code)) byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return byStatus;
}

// ------------------------------------------------------------------------------ the document

const isMedia = (b: unknown): b is MediaBody => typeof b === 'object' && b !== null && 'contentType' in b && !(b instanceof z.ZodType);

/**
 * Schemas named with `.meta({ id })` (openapi-responses.ts) come out of z.toJSONSchema as `$defs`:
 * they are gathered here, and become the document's components.
 */
let components: Record<string, unknown> = {};

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _, $defs, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Record<string, unknown>;
  Object.assign(components, $defs ?? {});
  return rest;
}

function content(body: z.ZodType | MediaBody, io: 'input' | 'output'): Record<string, unknown> {
  if (isMedia(body)) return { [body.contentType]: body.schema ? { schema: jsonSchema(body.schema, io) } : {} };
  return { 'application/json': { schema: jsonSchema(body, io) } };
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  304: 'Not Modified: the ETag sent in If-None-Match is current',
  400: 'Bad request: the message and details.fields say what is wrong',
  401: 'Missing or invalid credentials',
  403: 'Refused',
  404: 'Not found',
  409: 'Conflict with the current state',
  410: 'Gone',
  413: 'Body too large',
  415: 'Unsupported media type',
  422: 'The upload does not match its declaration',
  429: 'Too many: retry after Retry-After seconds',
  500: 'Internal error',
  502: 'The function failed',
  503: 'Unavailable: retry shortly',
  504: 'The function timed out',
};

function operation(doc: RouteDoc): Record<string, unknown> {
  const parameters: unknown[] = paramNames(doc.path).map((name) => ({
    name,
    in: 'path',
    required: true,
    schema: jsonSchema(paramSchema(doc, name), 'input'),
  }));
  if (doc.query) {
    for (const [name, schema] of Object.entries(doc.query.shape)) {
      const s = schema as z.ZodType;
      parameters.push({ name, in: 'query', required: !s.safeParse(undefined).success, schema: jsonSchema(s, 'input') });
    }
  }
  const responses: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(doc.responses)) {
    const description = (isMedia(r) && r.description) || STATUS_TEXT[Number(status)] || 'Answer';
    responses[status] = r === null ? { description } : { description, content: content(r, 'output') };
  }
  if (doc.passthrough) responses.default = { description: "The function's own answer: any status, headers and body" };
  for (const [status, codes] of errorStatuses(doc)) {
    responses[String(status)] = {
      description: `${STATUS_TEXT[status] ?? 'Error'} (${codes.join(', ')})`,
      headers: { 'X-ContainerPub-Error': { $ref: '#/components/headers/ContainerPubError' } },
      content: { 'application/json': { schema: jsonSchema(errorEnvelope(codes), 'output') } },
    };
  }
  const op: Record<string, unknown> = {
    operationId: operationId(doc),
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    tags: [doc.tag],
    ...(parameters.length ? { parameters } : {}),
    responses,
  };
  if (doc.body) {
    const bodies = Array.isArray(doc.body) ? doc.body : [doc.body];
    op.requestBody = { required: doc.bodyRequired ?? true, content: Object.assign({}, ...bodies.map((b) => content(b, 'input'))) };
  }
  if (doc.auth === 'none' || doc.auth === 'signature') op.security = [];
  if (doc.auth === 'session') op.security = [{ session: [] }];
  if (doc.auth === 'endpoint') op.security = [{}, { bearer: [] }, { functionKey: [] }, { functionKeyBearer: [] }];
  return op;
}

function operationId(doc: RouteDoc): string {
  const words = doc.path
    .split('/')
    .filter((s) => s && s !== 'api')
    .map((s) => (s === '*' ? 'by-path' : s.startsWith(':') ? `by-${s.slice(1)}` : s));
  return [doc.method, ...words].join('-').replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''));
}

function platformVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

export function buildOpenApiDocument(docs: readonly RouteDoc[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  components = {};
  for (const doc of docs) {
    const p = (paths[openApiPath(doc.path)] ??= {});
    if (p[doc.method]) throw new Error(`${doc.method.toUpperCase()} ${doc.path} is documented twice`);
    p[doc.method] = operation(doc);
  }
  const ids = Object.values(paths).flatMap((p) => Object.values(p).map((op) => (op as { operationId: string }).operationId));
  const twice = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (twice.length > 0) throw new Error(`operationIds used twice: ${twice.join(', ')}`);
  const schemas = components;
  const document = {
    openapi: '3.1.0',
    info: {
      title: 'ContainerPub API',
      version: platformVersion(),
      description:
        'Deploy, version, roll back and run functions. Errors are `{"error": {"code", "message", "details"?}}` with the code in ' +
        '`X-ContainerPub-Error`. Every `/api/functions/{id}…` route takes the function\'s id or its name.',
    },
    security: [{ bearer: [] }, { session: [] }],
    components: {
      schemas,
      headers: {
        ContainerPubError: { description: 'the error code: a platform error, not an answer of a function', schema: { type: 'string' } },
      },
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'an API token (cp_…) from POST /api/auth/register, /login or /tokens' },
        session: {
          type: 'apiKey',
          in: 'cookie',
          name: 'cp_session',
          description:
            "the dashboard's session (POST /api/auth/session), used when no Authorization header is sent; every method but GET, HEAD " +
            'and OPTIONS then needs X-CSRF-Token (the csrfToken of GET /api/auth/session), and an Origin header, if sent, must be this site (403 csrf_failed)',
        },
        functionKey: { type: 'apiKey', in: 'header', name: 'X-Function-Key', description: 'a function key (fk_…), for functions with access "key"' },
        functionKeyBearer: { type: 'http', scheme: 'bearer', description: 'a function key (fk_…) as a bearer token' },
      },
    },
    tags: [...new Set(docs.map((d) => d.tag))].map((name) => ({ name })),
    paths,
  };
  return JSON.parse(JSON.stringify(document).replaceAll('"#/$defs/', '"#/components/schemas/')) as Record<string, unknown>;
}

// ------------------------------------------------------------------------------ serving

/**
 * Scalar's API reference, a browser bundle, pinned: the page is ours and loads it from jsDelivr.
 * (Scalar's Hono middleware renders the same page but declares Node >= 22, and no npm package
 * holds the bundle without pulling in its whole Vue build.)
 */
export const SCALAR_BUNDLE_URL = 'https://cdn.jsdelivr.net/npm/@scalar/api-reference@1.76.0/dist/browser/standalone.js';

const DOCS_PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>ContainerPub API</title>
  </head>
  <body>
    <div id="app"></div>
    <noscript>The interactive reference needs JavaScript; the document itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
    <script src="${SCALAR_BUNDLE_URL}"></script>
    <script>Scalar.createApiReference('#app', { url: '/openapi.json', withDefaultFonts: false });</script>
  </body>
</html>
`;

/** GET /openapi.json and GET /docs (Scalar's reference of it). */
export function registerDocs(app: App, docs: readonly RouteDoc[]): void {
  let document: Record<string, unknown> | undefined;
  app.get('/openapi.json', (c) => c.json((document ??= buildOpenApiDocument(docs))));
  app.get('/docs', (c) => c.html(DOCS_PAGE));
}

// ------------------------------------------------------------------------------ checking answers

function segmentsOf(path: string): string[] {
  return path.split('/').filter(Boolean);
}

/**
 * The documented route a request reaches: literal segments win over parameters, as in Hono
 * (POST /api/functions/deploy is the deploy route, not a function named "deploy").
 */
export function findRouteDoc(docs: readonly RouteDoc[], method: string, pathname: string): RouteDoc | undefined {
  const m = method.toLowerCase() === 'head' ? 'get' : method.toLowerCase();
  const segs = segmentsOf(pathname).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  let best: { doc: RouteDoc; literals: number } | undefined;
  for (const doc of docs) {
    if (doc.method !== m) continue;
    const tpl = segmentsOf(doc.path);
    // /fn/:handle/:name/*: the rest of the path is the function's
    const rest = tpl.at(-1) === '*';
    const fixed = rest ? tpl.slice(0, -1) : tpl;
    if (rest ? segs.length < fixed.length : segs.length !== fixed.length) continue;
    let literals = 0;
    const ok = fixed.every((t, i) => {
      if (t.startsWith(':')) return segs[i] !== '';
      if (t === segs[i]) return ++literals > 0;
      return false;
    });
    if (ok && (!best || literals > best.literals)) best = { doc, literals };
  }
  return best?.doc;
}

/** The problems with an answer, measured against the document: none when it is documented. */
export function checkDocumented(
  docs: readonly RouteDoc[],
  req: { method: string; path: string },
  res: { status: number; body: unknown; headers: Headers },
): string[] {
  const pathname = new URL(req.path, 'http://x').pathname;
  const where = `${req.method.toUpperCase()} ${pathname}`;
  const doc = findRouteDoc(docs, req.method, pathname);
  const isError = res.headers.get('x-containerpub-error') !== null;
  if (!doc) {
    // Hono's answer to a path no route takes
    if (res.status === 404 && isError && (res.body as { error?: { code?: string } })?.error?.code === 'not_found') return [];
    return [`${where} answered ${res.status}, but no documented route matches it: add it to api/openapi-routes.ts`];
  }
  const name = `${doc.method.toUpperCase()} ${openApiPath(doc.path)}`;
  const errorCodes = errorStatuses(doc).get(res.status);
  const documented = doc.responses[res.status];
  if (isError || (documented === undefined && errorCodes)) {
    if (!errorCodes) {
      const code = (res.body as { error?: { code?: string } })?.error?.code;
      return [`${name} answered ${res.status} ${code ?? ''}, a status the document does not list for it (add the code to its errors)`];
    }
    return problemsOf(name, res.status, errorEnvelope(errorCodes), res.body);
  }
  if (documented === undefined) {
    if (doc.passthrough) return [];
    return [`${name} answered ${res.status}, a status the document does not list for it (it lists ${Object.keys(doc.responses).join(', ')})`];
  }
  // an answer to HEAD is a GET's without its body
  if (req.method.toUpperCase() === 'HEAD') return [];
  if (documented === null) {
    return res.body === null || res.body === '' ? [] : [`${name} answered ${res.status} with a body, documented as empty`];
  }
  if (isMedia(documented)) {
    const type = res.headers.get('content-type') ?? '';
    if (!mediaTypeMatches(documented.contentType, type)) return [`${name} answered ${res.status} as ${type}, documented as ${documented.contentType}`];
    return documented.schema ? problemsOf(name, res.status, documented.schema, res.body) : [];
  }
  return problemsOf(name, res.status, documented, res.body);
}

// A media type against a documented one, which may be a range: text/html, image/*, or any (*/*).
function mediaTypeMatches(documented: string, actual: string): boolean {
  if (documented === '*/*') return actual !== '';
  if (documented.endsWith('/*')) return actual.startsWith(documented.slice(0, -1));
  return actual.startsWith(documented);
}

function problemsOf(name: string, status: number, schema: z.ZodType, body: unknown): string[] {
  const parsed = schema.safeParse(body);
  if (parsed.success) return [];
  return leafIssues(parsed.error.issues).map((i) => `${name} ${status}: at ${i.path.map(String).join('.') || '(body)'}: ${i.message}`);
}

/** A union's "Invalid input" says nothing: the issues of its closest branch do. */
function leafIssues(issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[] = []): { path: PropertyKey[]; message: string }[] {
  return issues.flatMap((i) => {
    const path = [...prefix, ...i.path];
    if (i.code === 'invalid_union' && i.errors.length > 0) {
      const closest = [...i.errors].sort((a, b) => a.length - b.length)[0]!;
      return leafIssues(closest, path);
    }
    return [{ path, message: i.message }];
  });
}
