// Request parsing: every body, param and query goes through a zod schema; failures are 400s that
// say which field is wrong.
import type { Context } from 'hono';
import { z } from 'zod';
import { errors } from '../../shared/errors.ts';
import { FUNCTION_NAME_PATTERN, UUID_PATTERN } from '../../shared/domain/model.ts';
import { JSON_BODY_LIMIT, jsonBodyTooLarge, readBodyText } from './body.ts';

/**
 * The issues as field/message pairs. A record key that fails its schema comes as one "Invalid key
 * in record" issue holding the key's own issues: those say what is wrong, so they are used.
 */
function flatten(issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[] = []): { field: string; message: string }[] {
  return issues.flatMap((i) => {
    const path = [...prefix, ...i.path];
    const nested = (i as { issues?: z.core.$ZodIssue[] }).issues;
    if (i.code === 'invalid_key' && nested?.length) return flatten(nested, path);
    return [{ field: path.map(String).join('.') || '(body)', message: i.message }];
  });
}

function describe(error: z.ZodError): { message: string; details: Record<string, unknown> } {
  const fields = flatten(error.issues);
  return {
    message: fields.map((f) => `${f.field}: ${f.message}`).join('; '),
    details: { fields },
  };
}

export function parseWith<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const { message, details } = describe(parsed.error);
    throw errors.validation(message, details);
  }
  return parsed.data;
}

/**
 * The request's JSON, read straight from Node's request (body.ts) and bounded by JSON_BODY_LIMIT as
 * it arrives, chunked or not: through the web Request, reading even a tiny body built a web stream
 * and a Request (~0.15 ms, more than a rollback's own statements).
 */
export async function readJson(c: Context, opts: { optional?: boolean } = {}): Promise<unknown> {
  const text = await readBodyText(c, JSON_BODY_LIMIT, () => jsonBodyTooLarge());
  if (text.trim() === '') {
    if (opts.optional) return {};
    throw errors.badRequest('request body must be a JSON object');
  }
  try {
    return JSON.parse(text);
  } catch {
    throw errors.invalidJson();
  }
}

export async function jsonBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  return parseWith(schema, await readJson(c));
}

/** A positive integer arriving as text (path segments, query strings). */
export const positiveIntString = z
  .string()
  .regex(/^[1-9][0-9]{0,8}$/, 'must be a positive integer')
  .transform(Number);
export const versionParam = positiveIntString;

/**
 * The function `:id` names: its id, or the name of one of the caller's functions, resolved to the
 * id by the tenant guard (tenant.ts) that every /api/functions/:id route passes.
 */
export function functionId(c: Context): string {
  const resolved = c.get('functionId') as string | undefined;
  if (resolved) return resolved;
  const id = c.req.param('id') ?? '';
  if (UUID_PATTERN.test(id)) return id.toLowerCase();
  if (FUNCTION_NAME_PATTERN.test(id)) throw errors.functionNotFound();
  throw errors.badRequest(`"${id}" is neither a function id (a UUID) nor a function name`);
}

export function versionFrom(c: Context, name = 'version'): number {
  const raw = c.req.param(name);
  const parsed = versionParam.safeParse(raw);
  if (!parsed.success) throw errors.badRequest(`version "${raw}" is not a positive integer`);
  return parsed.data;
}
