// Tags: a name that points at one built version of a function (`beta`, `stable`, `pr-42`), served at
// /fn/{handle}/{name}@{tag}/… and by POST …/invoke?tag=…, with the function's own access rules.
// Setting a tag again moves it; the serving processes see the move on the next request (the change
// is announced like an activation). Retention never archives a tagged version.
import type { Knex } from 'knex';
import { z } from 'zod';
import type { Db } from '../db/knex.ts';
import { lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { nowIso, toIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { recordEvent } from './events.ts';
import { announceFunctionChanged } from './function-changes.ts';
import { builtVersion } from './traffic.ts';
import { looksLikeVersionPin, TAG_NAME_RULES, TAG_PATTERN } from './tag-name.ts';

export { TAG_PATTERN };

/** A tag's name, as the API checks it (the rule: tag-name.ts; the pattern shows in the OpenAPI document). */
export const tagNameSchema = z
  .string()
  .regex(TAG_PATTERN, TAG_NAME_RULES.pattern)
  .refine((t) => !looksLikeVersionPin(t), TAG_NAME_RULES.versionPin);

export const setTagSchema = z.strictObject({
  version: z.number().int('must be an integer').positive('must be a positive integer'),
});

export interface TagView {
  tag: string;
  version: number;
  deploymentId: string;
  updatedAt: string | null;
}

export async function setTag(db: Db, functionId: string, tag: string, version: number, actor: string | null): Promise<TagView> {
  return withTransaction(db, async (trx) => {
    if (!(await lockFunctionRow(db, trx, functionId))) throw errors.functionNotFound();
    const dep = await builtVersion(trx, functionId, version);
    const now = nowIso();
    const before = await trx('function_tags').where({ function_id: functionId, tag }).first('deployment_id');
    if (before) {
      await trx('function_tags').where({ function_id: functionId, tag }).update({ deployment_id: dep.id, updated_at: now });
    } else {
      await trx('function_tags').insert({ function_id: functionId, tag, deployment_id: dep.id, created_at: now, updated_at: now });
    }
    await announceFunctionChanged(db, trx, functionId);
    await recordEvent(trx, {
      functionId,
      deploymentId: dep.id,
      version,
      event: 'tag_set',
      message: `tag "${tag}" ${before ? 'moved to' : 'set on'} version ${version}${actor ? ` by ${actor}` : ''}`,
    });
    return { tag, version, deploymentId: dep.id, updatedAt: now };
  });
}

export async function deleteTag(db: Db, functionId: string, tag: string, actor: string | null): Promise<void> {
  await withTransaction(db, async (trx) => {
    if (!(await lockFunctionRow(db, trx, functionId))) throw errors.functionNotFound();
    const row = await trx('function_tags as t')
      .join('function_deployments as d', 'd.id', 't.deployment_id')
      .where({ 't.function_id': functionId, 't.tag': tag })
      .first('d.id', 'd.version');
    if (!row) throw errors.tagNotFound(tag);
    await trx('function_tags').where({ function_id: functionId, tag }).delete();
    await announceFunctionChanged(db, trx, functionId);
    await recordEvent(trx, {
      functionId,
      deploymentId: row.id,
      version: num(row.version),
      event: 'tag_removed',
      message: `tag "${tag}" removed from version ${row.version}${actor ? ` by ${actor}` : ''}`,
    });
  });
}

export async function listTags(q: Knex | Knex.Transaction, functionId: string): Promise<TagView[]> {
  const rows = await q('function_tags as t')
    .join('function_deployments as d', 'd.id', 't.deployment_id')
    .where({ 't.function_id': functionId })
    .orderBy('t.tag', 'asc')
    .select('t.tag', 'd.version', 'd.id as deployment_id', 't.updated_at');
  return rows.map((r) => ({ tag: r.tag, version: num(r.version), deploymentId: r.deployment_id, updatedAt: toIso(r.updated_at) }));
}
