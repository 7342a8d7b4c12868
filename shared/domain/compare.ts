// What changed between two versions of a function: its code (the archive's sha256) and its
// configuration, compared as the owner sees it (configView: effective limits, env values, secrets
// by name). A secret counts as changed when its plaintext differs, found by opening both sealed
// values; the answer only ever says "(secret)", never a value.
import type { Platform } from '../platform.ts';
import { getDeploymentByVersion } from './deployments.ts';
import { configView, parseStoredConfig, secretContext, type ConfigView, type StoredConfig } from './release-config.ts';

/** What stands in for a secret's value wherever a comparison mentions one. */
export const SECRET_PLACEHOLDER = '(secret)';

export type ConfigValue = string | number;

export interface VersionComparison {
  code: {
    changed: boolean;
    /** the archives' sha256 of a and b (null: not uploaded) */
    sha256: [string | null, string | null];
  };
  config: {
    /** set in b, not in a: `env.K`, `secrets.K` */
    added: Record<string, ConfigValue>;
    /** set in a, not in b (with a's value) */
    removed: Record<string, ConfigValue>;
    /** `env.K`, `secrets.K`, and the limits by their key (memoryMb, timeoutMs, …, network) */
    changed: Record<string, { from: ConfigValue; to: ConfigValue }>;
  };
}

const SETTING_KEYS = ['memoryMb', 'timeoutMs', 'minInstances', 'maxInstances', 'concurrency', 'network'] as const;

/** Compares version `a` with version `b` of one function (404 version_not_found for either). */
export async function compareVersions(p: Platform, functionId: string, a: number, b: number): Promise<VersionComparison> {
  const [rowA, rowB] = await Promise.all([getDeploymentByVersion(p.db, functionId, a), getDeploymentByVersion(p.db, functionId, b)]);
  const storedA = parseStoredConfig(rowA.config);
  const storedB = parseStoredConfig(rowB.config);
  const shaA = rowA.archive_sha256 ?? null;
  const shaB = rowB.archive_sha256 ?? null;
  return {
    code: { changed: shaA !== shaB, sha256: [shaA, shaB] },
    config: diffConfigs(storedA, storedB, configView(storedA, p.config), configView(storedB, p.config), (name, sealedA, sealedB) =>
      secretChanged(p, functionId, name, sealedA, sealedB),
    ),
  };
}

export function diffConfigs(
  storedA: StoredConfig,
  storedB: StoredConfig,
  viewA: ConfigView,
  viewB: ConfigView,
  secretDiffers: (name: string, sealedA: string, sealedB: string) => boolean,
): VersionComparison['config'] {
  const added: Record<string, ConfigValue> = {};
  const removed: Record<string, ConfigValue> = {};
  const changed: Record<string, { from: ConfigValue; to: ConfigValue }> = {};

  for (const name of sortedUnion(viewA.env, viewB.env)) {
    const from = viewA.env[name];
    const to = viewB.env[name];
    if (from === undefined) added[`env.${name}`] = to!;
    else if (to === undefined) removed[`env.${name}`] = from;
    else if (from !== to) changed[`env.${name}`] = { from, to };
  }

  const sealedA = storedA.secrets ?? {};
  const sealedB = storedB.secrets ?? {};
  for (const name of sortedUnion(sealedA, sealedB)) {
    const from = sealedA[name];
    const to = sealedB[name];
    if (from === undefined) added[`secrets.${name}`] = SECRET_PLACEHOLDER;
    else if (to === undefined) removed[`secrets.${name}`] = SECRET_PLACEHOLDER;
    else if (from !== to && secretDiffers(name, from, to)) changed[`secrets.${name}`] = { from: SECRET_PLACEHOLDER, to: SECRET_PLACEHOLDER };
  }

  for (const key of SETTING_KEYS) {
    if (viewA[key] !== viewB[key]) changed[key] = { from: viewA[key], to: viewB[key] };
  }
  return { added, removed, changed };
}

/**
 * Whether two sealed values of one secret hold different plaintexts. A value that does not open
 * (altered in the database) cannot be shown equal, so it counts as changed; the log line names the
 * secret, never a value.
 */
function secretChanged(p: Platform, functionId: string, name: string, sealedA: string, sealedB: string): boolean {
  const context = secretContext(functionId, name);
  try {
    return p.secrets.open(sealedA, context) !== p.secrets.open(sealedB, context);
  } catch (err) {
    p.logger.warn('a stored secret did not open while comparing versions', { functionId, secret: name, err: (err as Error).message });
    return true;
  }
}

function sortedUnion(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
}
