// The configuration a version runs with: environment, secrets, limits and network. Every version
// stores what it sets (StoredConfig, in function_deployments.config); what it leaves unset takes the
// platform's defaults (FUNCTION_* settings) when it runs. A deploy inherits the latest version's
// configuration (plus the patch it carries), and a configuration change is itself a new version, so
// a rollback brings back code and configuration together.
import { z } from 'zod';
import type { Config } from '../config.ts';
import { errors } from '../errors.ts';

export const ENV_NAME_PATTERN = /^[A-Z_][A-Z0-9_]*$/;
const RESERVED_PREFIX = 'CONTAINERPUB_';
const MAX_VARIABLES = 100;
const MAX_VALUE_BYTES = 32 * 1024;
export const NETWORK_MODES = ['none', 'outbound'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

const envName = z
  .string()
  .max(128)
  .regex(ENV_NAME_PATTERN, 'must be A-Z, 0-9 and _, not starting with a digit')
  .refine((n) => !n.startsWith(RESERVED_PREFIX), { message: `the ${RESERVED_PREFIX} prefix is reserved for the platform` });
const envValue = z.string().refine((v) => Buffer.byteLength(v) <= MAX_VALUE_BYTES, { message: `must be at most ${MAX_VALUE_BYTES} bytes` });
const variables = z
  .record(envName, envValue.nullable())
  .refine((r) => Object.keys(r).length <= MAX_VARIABLES, { message: `at most ${MAX_VARIABLES} at once` });
const limit = (min: number, max: number) => z.number().int('must be a whole number').min(min).max(max).nullable().optional();

/** A change to a configuration: a key set to null goes back to unset (the platform default). */
export const configPatchSchema = z.strictObject({
  env: variables.optional(),
  secrets: variables.optional(),
  memoryMb: limit(64, 4096),
  timeoutMs: limit(100, 900_000),
  minInstances: limit(0, 1000),
  maxInstances: limit(1, 1000),
  concurrency: limit(1, 1000),
  network: z.enum(NETWORK_MODES).nullable().optional(),
});
export type ConfigPatch = z.infer<typeof configPatchSchema>;

const LIMIT_KEYS = ['memoryMb', 'timeoutMs', 'minInstances', 'maxInstances', 'concurrency'] as const;
type LimitKey = (typeof LIMIT_KEYS)[number];

/** What a version sets (as stored): secrets sealed (see SecretSealer). */
export interface StoredConfig {
  env?: Record<string, string>;
  secrets?: Record<string, string>;
  memoryMb?: number;
  timeoutMs?: number;
  minInstances?: number;
  maxInstances?: number;
  concurrency?: number;
  network?: NetworkMode;
}

/** Seals secret values at rest (SECRETS_KEY); `context` binds a sealed value to where it belongs. */
export interface SecretSealer {
  seal(plaintext: string, context: string): string;
  open(sealed: string, context: string): string;
}

export const secretContext = (functionId: string, name: string) => `${functionId}/${name}`;

export function parseStoredConfig(text: unknown): StoredConfig {
  if (typeof text !== 'string' || text === '') return {};
  try {
    const parsed = JSON.parse(text);
    return parsed && typeof parsed === 'object' ? (parsed as StoredConfig) : {};
  } catch {
    return {};
  }
}

function mergeVariables(
  current: Record<string, string> | undefined,
  patch: Record<string, string | null> | undefined,
  transform: (name: string, value: string) => string = (_n, v) => v,
): Record<string, string> | undefined {
  if (!patch) return current;
  const next = { ...(current ?? {}) };
  for (const [name, value] of Object.entries(patch)) {
    if (value === null) delete next[name];
    else next[name] = transform(name, value);
  }
  if (Object.keys(next).length > MAX_VARIABLES) throw errors.validation(`a version may have at most ${MAX_VARIABLES} variables of each kind`);
  return Object.keys(next).length > 0 ? next : undefined;
}

/** `stored` with `patch` applied; secrets are sealed for `functionId` on the way in. */
export function applyConfigPatch(
  stored: StoredConfig,
  patch: ConfigPatch,
  opts: { functionId: string; sealer: SecretSealer },
): StoredConfig {
  const next: StoredConfig = { ...stored };
  const env = mergeVariables(stored.env, patch.env);
  if (env) next.env = env;
  else delete next.env;
  const secrets = mergeVariables(stored.secrets, patch.secrets, (name, value) => opts.sealer.seal(value, secretContext(opts.functionId, name)));
  if (secrets) next.secrets = secrets;
  else delete next.secrets;
  for (const key of LIMIT_KEYS) {
    const value = patch[key];
    if (value === null) delete next[key];
    else if (value !== undefined) next[key] = value;
  }
  if (patch.network === null) delete next.network;
  else if (patch.network !== undefined) next.network = patch.network;
  return next;
}

/** The limits and network a version runs with: what it sets, else the platform's defaults. */
export interface EffectiveSettings {
  memoryMb: number;
  timeoutMs: number;
  minInstances: number;
  maxInstances: number;
  concurrency: number;
  network: NetworkMode;
}

export function effectiveSettings(stored: StoredConfig, config: Config): EffectiveSettings {
  const pick = (key: LimitKey, fallback: number) => (typeof stored[key] === 'number' ? (stored[key] as number) : fallback);
  return {
    memoryMb: pick('memoryMb', config.runtime.memoryMb),
    timeoutMs: pick('timeoutMs', config.runtime.timeoutMs),
    minInstances: pick('minInstances', 0),
    maxInstances: pick('maxInstances', config.instances.maxPerVersion),
    concurrency: pick('concurrency', config.instances.concurrency),
    network: stored.network ?? config.runtime.defaultNetwork,
  };
}

/** Refuses a configuration that cannot run (checked before any version is made). */
export function checkConfig(stored: StoredConfig, config: Config): void {
  const s = effectiveSettings(stored, config);
  if (s.minInstances > s.maxInstances) {
    throw errors.validation(`minInstances (${s.minInstances}) must not exceed maxInstances (${s.maxInstances})`, {
      fields: [{ field: 'minInstances', message: `must be at most maxInstances (${s.maxInstances})` }],
    });
  }
}

/** The configuration as an owner sees it: effective values, secrets by name only. */
export interface ConfigView extends EffectiveSettings {
  env: Record<string, string>;
  secrets: string[];
}

export function configView(stored: StoredConfig, config: Config): ConfigView {
  return {
    env: { ...(stored.env ?? {}) },
    secrets: Object.keys(stored.secrets ?? {}).sort(),
    ...effectiveSettings(stored, config),
  };
}

/** The environment of an instance: the version's variables, then its secrets, opened. */
export function instanceVariables(stored: StoredConfig, functionId: string, sealer: SecretSealer): Record<string, string> {
  const env: Record<string, string> = { ...(stored.env ?? {}) };
  for (const [name, sealed] of Object.entries(stored.secrets ?? {})) env[name] = sealer.open(sealed, secretContext(functionId, name));
  return env;
}

/** Deploy metadata, as given with a deploy (bounded: it is shown in every history listing). */
export const deployMetadataSchema = z.strictObject({
  message: z.string().max(500).optional(),
  gitSha: z
    .string()
    .regex(/^[0-9a-f]{7,64}$/i, 'must be a git commit hash')
    .optional(),
  author: z.string().max(200).optional(),
});
export type DeployMetadata = z.infer<typeof deployMetadataSchema>;

export function parseMetadata(text: unknown): DeployMetadata | null {
  if (typeof text !== 'string' || text === '') return null;
  try {
    return JSON.parse(text) as DeployMetadata;
  } catch {
    return null;
  }
}
