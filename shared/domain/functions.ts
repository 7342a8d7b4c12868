// Functions as their owner sees them: lookup with tenant isolation, listing, the summary view.
import type { Db } from '../db/knex.ts';
import { bool, num } from '../db/dialect.ts';
import { toIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { accessOf, type AccessMode } from './access.ts';
import { functionUrls, type UrlBase } from './endpoint-address.ts';
import { lastHourByFunction, type RecentCounts } from './metrics.ts';
import type { FunctionRow } from './model.ts';
import { trafficShares, type TrafficShare } from './traffic.ts';

export interface FunctionView {
  id: string;
  name: string;
  status: string;
  activeVersion: number | null;
  activeDeploymentId: string | null;
  latestVersion: number;
  /** who may call its endpoint */
  access: AccessMode;
  /** its endpoint (path form) */
  url: string;
  /** its endpoint (host form), when FUNCTIONS_DOMAIN is set */
  hostUrl?: string;
  /** who takes the traffic: the live version, and the candidate when a split is set (traffic.ts) */
  traffic: TrafficShare[];
  /** whether a caller's traffic key keeps it on one version */
  sticky: boolean;
  /** every deploy waits for approval */
  requireApproval: boolean;
  createdAt: string | null;
  updatedAt: string | null;
  /** when its newest version was asked for (a deploy or a configuration change); null before any */
  lastDeployedAt: string | null;
}

function summaryQuery(db: Db) {
  return db
    .knex('functions as f')
    .leftJoin('function_deployments as d', 'd.id', 'f.active_deployment_id')
    .leftJoin('function_deployments as c', 'c.id', 'f.candidate_deployment_id')
    // the newest version, by the unique (function_id, version) index
    .leftJoin('function_deployments as l', (j) => j.on('l.function_id', 'f.id').andOn('l.version', 'f.last_version'))
    .join('users as u', 'u.id', 'f.user_id')
    .select(
      'f.*',
      'u.handle',
      'd.version as active_version',
      'c.version as candidate_version',
      'l.created_at as last_deployed_at',
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

type SummaryRow = FunctionRow & {
  handle: string;
  access: string;
  active_version: number | null;
  candidate_version: number | null;
  last_deployed_at: unknown;
  has_unfailed: unknown;
};

function toView(row: SummaryRow, base: UrlBase): FunctionView {
  return {
    id: row.id,
    name: row.name,
    status: functionStatus(row),
    activeVersion: row.active_version === null ? null : num(row.active_version),
    activeDeploymentId: row.active_deployment_id ?? null,
    latestVersion: num(row.last_version),
    access: accessOf(row.access),
    ...functionUrls(base, row.handle, row.name),
    traffic: trafficShares(
      row.active_version === null ? null : { version: num(row.active_version), deploymentId: row.active_deployment_id! },
      row.candidate_version === null ? null : { version: num(row.candidate_version), deploymentId: row.candidate_deployment_id!, percent: num(row.candidate_percent) },
    ),
    sticky: bool(row.traffic_sticky),
    requireApproval: bool(row.require_approval),
    createdAt: toIso(row.created_at),
    updatedAt: toIso(row.updated_at),
    lastDeployedAt: toIso(row.last_deployed_at as string | null),
  };
}

export async function getFunctionView(db: Db, userId: string, functionId: string, base: UrlBase): Promise<FunctionView> {
  const row = await summaryQuery(db).where({ 'f.id': functionId, 'f.user_id': userId }).first();
  if (!row) throw errors.functionNotFound();
  return toView(row, base);
}

/** A function in the owner's list: its view, and its requests and errors over the last hour. */
export interface FunctionSummary extends FunctionView {
  lastHour: RecentCounts;
}

/** Two queries whatever the length of the list: the functions, and their last hour's counts grouped. */
export async function listFunctions(db: Db, userId: string, base: UrlBase): Promise<FunctionSummary[]> {
  const [rows, lastHour] = await Promise.all([
    summaryQuery(db).where({ 'f.user_id': userId }).orderBy('f.name', 'asc'),
    lastHourByFunction(db, userId),
  ]);
  return rows.map((r: SummaryRow) => ({ ...toView(r, base), lastHour: lastHour.get(r.id) ?? { requests: 0, errors: 0 } }));
}
