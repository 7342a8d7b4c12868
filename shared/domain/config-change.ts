// A configuration change is a release: PATCH /api/functions/{id}/config makes a new version that
// runs the live version's code with the changed configuration. It is queued like a build, but the
// runner builds nothing: it reuses the live version's artifact (runner/build-job.ts reuseCode),
// checks that an instance with the new configuration gets ready, and the version goes live by the
// same rule as a deploy. So history shows it, and a rollback undoes it.
import type { Db } from '../db/knex.ts';
import { num } from '../db/dialect.ts';
import { errors } from '../errors.ts';
import type { Platform } from '../platform.ts';
import type { FunctionRow } from './model.ts';
import { configView, parseStoredConfig, type ConfigPatch, type ConfigView } from './release-config.ts';
import { allocateVersion } from './versions.ts';

export interface ConfigChangeRequested {
  id: string;
  version: number;
  deploymentId: string;
  status: string;
  source: 'config';
}

export async function requestConfigChange(p: Platform, userId: string, functionId: string, patch: ConfigPatch): Promise<ConfigChangeRequested> {
  const fn = (await p.db.knex('functions').where({ id: functionId, user_id: userId }).first()) as FunctionRow | undefined;
  if (!fn) throw errors.functionNotFound();
  const allocated = await allocateVersion(p.db, {
    userId,
    name: fn.name,
    status: 'building',
    quotas: p.config.quotas,
    config: { patch, sealer: p.secrets, platform: p.config },
    fromLive: true,
  });
  const d = allocated.deployment;
  return { id: functionId, version: num(d.version), deploymentId: d.id, status: d.status, source: 'config' };
}

/** The configuration of the live version (else of the latest one), as its owner sees it. */
export async function currentConfig(db: Db, platform: Platform['config'], functionId: string): Promise<ConfigView & { version: number | null }> {
  const live = await db.knex('function_deployments').where({ function_id: functionId, is_active: true }).first('config', 'version', 'status');
  const row = live ?? (await db.knex('function_deployments').where({ function_id: functionId }).orderBy('version', 'desc').first('config', 'version', 'status'));
  return { version: row ? num(row.version) : null, ...configView(parseStoredConfig(row?.config), platform) };
}
