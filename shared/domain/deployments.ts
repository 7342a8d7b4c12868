// Deployment history queries and the deployment view.
import type { Config } from '../config.ts';
import { configView, parseMetadata, parseStoredConfig, type ConfigView, type DeployMetadata } from './release-config.ts';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { bool, num } from '../db/dialect.ts';
import { readDirect } from '../db/direct-reads.ts';
import { toIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { awaitsApproval } from './activation.ts';
import type { DeploymentRow } from './model.ts';

export interface DeploymentView {
  /** deploy: new code; config: a configuration change running an earlier version's code */
  source: 'deploy' | 'config';
  /** the configuration it runs with (secrets by name only) */
  config: ConfigView;
  metadata: DeployMetadata | null;
  id: string;
  version: number;
  imageTag: string | null;
  s3Key: string;
  status: string;
  isActive: boolean;
  deployedAt: string | null;
  activatedAt: string | null;
  createdAt: string | null;
  /** why the build failed (for good, or the attempt that is waiting to be retried) */
  error: string | null;
  /** the last failed attempt's error, kept when a later attempt succeeded */
  lastError: string | null;
  /** a build waiting out its backoff: when it is tried again (the database's clock) */
  nextAttemptAt: string | null;
  sizeBytes: number | null;
  sha256: string | null;
  /** build attempts spent (an attempt that met an outage of S3, the registry or the engine is given back) */
  attempts: number;
  /** where the archive is now, or null when it was deleted */
  archiveKey: string | null;
  archiveStorageClass: string | null;
  archivedAt: string | null;
  /** what retention cleanup removed */
  cleanupNote: string | null;
  /** the tags that point at it (tags.ts) */
  tags: string[];
  /** built with activate:false (or under requireApproval), and not approved yet */
  awaitingApproval: boolean;
  approvedBy: string | null;
  approvedAt: string | null;
}

export interface DeploymentDetailView extends DeploymentView {
  buildLogs: string | null;
}

export function toDeploymentView(row: DeploymentRow, platform: Config, tags: string[] = []): DeploymentView {
  return {
    id: row.id,
    version: num(row.version),
    imageTag: row.image_tag ?? null,
    s3Key: row.s3_key,
    status: row.status,
    isActive: bool(row.is_active),
    deployedAt: toIso(row.deployed_at),
    activatedAt: toIso(row.activated_at),
    createdAt: toIso(row.created_at),
    error: row.error ?? null,
    lastError: row.last_error ?? null,
    nextAttemptAt: row.status === 'building' ? toIso(row.next_attempt_at) : null,
    sizeBytes: row.archive_size === null ? null : num(row.archive_size),
    sha256: row.archive_sha256 ?? null,
    attempts: num(row.attempts),
    archiveKey: row.archive_removed_at ? null : (row.archive_key ?? row.s3_key),
    archiveStorageClass: row.archive_storage_class ?? null,
    archivedAt: toIso(row.archived_at),
    cleanupNote: row.cleanup_note ?? null,
    source: row.source === 'config' ? 'config' : 'deploy',
    config: configView(parseStoredConfig(row.config), platform),
    metadata: parseMetadata(row.metadata),
    tags,
    awaitingApproval: awaitsApproval(row),
    approvedBy: row.approved_by ?? null,
    approvedAt: toIso(row.approved_at),
  };
}

export function toDeploymentDetailView(row: DeploymentRow, platform: Config, tags: string[] = []): DeploymentDetailView {
  return { ...toDeploymentView(row, platform, tags), buildLogs: row.build_logs ?? null };
}

/** The tags of a function's deployments, by deployment id. */
export async function tagsByDeployment(q: Knex | Knex.Transaction, functionId: string): Promise<Map<string, string[]>> {
  return byDeployment(await q('function_tags').where({ function_id: functionId }).orderBy('tag', 'asc').select('tag', 'deployment_id'));
}

interface TagRow {
  tag: string;
  deployment_id: string;
}

function byDeployment(rows: readonly TagRow[]): Map<string, string[]> {
  const tags = new Map<string, string[]>();
  for (const r of rows) tags.set(r.deployment_id, [...(tags.get(r.deployment_id) ?? []), r.tag]);
  return tags;
}

// The history list never reads build_logs: they can be large and the list can be long.
export const LIST_COLUMNS = [
  'id', 'function_id', 'version', 'image_tag', 's3_key', 'status', 'is_active', 'error',
  'archive_size', 'archive_sha256', 'attempts', 'deployed_at', 'activated_at', 'created_at',
  'archive_key', 'archive_storage_class', 'archive_removed_at', 'archived_at', 'cleanup_note',
  'source', 'config', 'metadata', 'auto_activate', 'approved_by', 'approved_at', 'last_error', 'next_attempt_at',
];
const LIST_SQL = `SELECT ${LIST_COLUMNS.join(', ')} FROM function_deployments WHERE function_id = ?`;
const TAGS_SQL = 'SELECT tag, deployment_id FROM function_tags WHERE function_id = ? ORDER BY tag ASC';

export async function listDeployments(
  db: Db,
  functionId: string,
  opts: { limit: number; before?: number },
  platform: Config,
): Promise<DeploymentView[]> {
  const page = opts.before === undefined
    ? { sql: `${LIST_SQL} ORDER BY version DESC LIMIT ?`, bindings: [functionId, opts.limit] }
    : { sql: `${LIST_SQL} AND version < ? ORDER BY version DESC LIMIT ?`, bindings: [functionId, opts.before, opts.limit] };
  // the page and the tags in one read, not through knex: the history is the console's most read page
  const [rows, tagRows] = (await readDirect(db, [page, { sql: TAGS_SQL, bindings: [functionId] }])) as [DeploymentRow[], TagRow[]];
  const tags = byDeployment(tagRows);
  return rows.map((r) => toDeploymentView(r, platform, tags.get(r.id)));
}

export async function findDeploymentByVersion(
  trx: Knex | Knex.Transaction,
  functionId: string,
  version: number,
): Promise<DeploymentRow | null> {
  const row = await trx('function_deployments').where({ function_id: functionId, version }).first();
  return (row as DeploymentRow | undefined) ?? null;
}

export async function getDeploymentByVersion(db: Db, functionId: string, version: number): Promise<DeploymentRow> {
  const row = await findDeploymentByVersion(db.knex, functionId, version);
  if (!row) throw errors.versionNotFound(version);
  return row;
}
