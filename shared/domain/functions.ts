// Functions as their owner sees them: lookup with tenant isolation, listing, the summary view.
import type { Db } from '../db/knex.ts';
import { bool, num } from '../db/dialect.ts';
import { toIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import type { FunctionRow } from './model.ts';

export interface FunctionView {
  id: string;
  name: string;
  status: string;
  activeVersion: number | null;
  activeDeploymentId: string | null;
  latestVersion: number;
  createdAt: string | null;
  updatedAt: string | null;
}

function summaryQuery(db: Db) {
  return db
    .knex('functions as f')
    .leftJoin('function_deployments as d', 'd.id', 'f.active_deployment_id')
    .select(
      'f.*',
      'd.version as active_version',
      db.knex.raw(`EXISTS (SELECT 1 FROM function_deployments x WHERE x.function_id = f.id AND x.status <> 'failed') AS has_unfailed`),
    );
}

/**
 * `pending` until a version goes live, then `active`; derived here rather than written by every
 * path that can fail a version (build, upload check, expiry, abandoned attempts): a function that
 * never went live and whose versions all failed is `failed`, until a new deploy makes it pending.
 */
function functionStatus(row: FunctionRow & { has_unfailed: unknown }): string {
  if (row.status === 'pending' && num(row.last_version) > 0 && !bool(row.has_unfailed)) return 'failed';
  return row.status;
}

function toView(row: FunctionRow & { active_version: number | null; has_unfailed: unknown }): FunctionView {
  return {
    id: row.id,
    name: row.name,
    status: functionStatus(row),
    activeVersion: row.active_version === null ? null : num(row.active_version),
    activeDeploymentId: row.active_deployment_id ?? null,
    latestVersion: num(row.last_version),
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
  };
}

export async function getFunctionView(db: Db, userId: string, functionId: string): Promise<FunctionView> {
  const row = await summaryQuery(db).where({ 'f.id': functionId, 'f.user_id': userId }).first();
  if (!row) throw errors.functionNotFound();
  return toView(row);
}

export async function listFunctions(db: Db, userId: string): Promise<FunctionView[]> {
  const rows = await summaryQuery(db).where({ 'f.user_id': userId }).orderBy('f.name', 'asc');
  return rows.map(toView);
}
