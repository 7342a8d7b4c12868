// Row shapes and names shared by the API, the runner and the scripts.

/** A deployment's lifecycle. `active` means built and runnable; `is_active` marks the live one. */
export type DeploymentStatus =
  | 'pending_upload'
  | 'building'
  | 'active'
  | 'failed'
  /** retention cleanup is removing its image and moving its archive (a short, resumable state) */
  | 'archiving'
  /** image removed; archive kept (possibly moved or in a cheaper storage class): restorable */
  | 'archived'
  /** image and archive removed: history only */
  | 'deleted';

export const BUILT_STATUS: DeploymentStatus = 'active';

export interface FunctionRow {
  id: string;
  user_id: string;
  name: string;
  status: string;
  active_deployment_id: string | null;
  last_version: number;
  intent_seq: number | string;
  active_intent_seq: number | string;
  candidate_deployment_id: string | null;
  candidate_percent: number;
  traffic_sticky: boolean | number;
  require_approval: boolean | number;
  created_at: unknown;
  updated_at: unknown;
}

export interface DeploymentRow {
  id: string;
  function_id: string;
  version: number;
  image_tag: string | null;
  s3_key: string;
  status: DeploymentStatus;
  is_active: boolean | number;
  build_logs: string | null;
  error: string | null;
  declared_size: number | string | null;
  declared_sha256: string | null;
  archive_size: number | string | null;
  archive_sha256: string | null;
  intent_seq: number | string;
  claimed_by: string | null;
  /** the holder's claim (build-queue.ts claimBuilds): fresh per claim */
  claim_token?: string | null;
  lease_expires_at: unknown;
  attempts: number;
  /** a failed attempt is retried from this time on (the database's clock) */
  next_attempt_at?: unknown;
  /** the first claim of the current round of attempts: an outage is waited out for BUILD_TIMEOUT_MS from here */
  first_attempt_at?: unknown;
  /** retries after outages, which spend no attempt */
  outage_retries?: number | string;
  /** the last failed attempt's error */
  last_error?: string | null;
  upload_expires_at: unknown;
  upload_claimed_at?: unknown;
  queued_at: unknown;
  deployed_at: unknown;
  activated_at: unknown;
  archive_key: string | null;
  archive_storage_class: string | null;
  archive_removed_at: unknown;
  image_removed_at: unknown;
  archived_at: unknown;
  cleanup_note: string | null;
  /** the runtime driver that built it (NULL: built before this was recorded; see version-driver.ts) */
  runtime_driver: string | null;
  /** the configuration it runs with (JSON; shared/domain/release-config.ts) */
  config: string;
  /** deploy | config */
  source: string;
  /** JSON {message?, gitSha?, author?} */
  metadata: string | null;
  /** a configuration change: the version whose code it reuses */
  base_deployment_id: string | null;
  /** false: the build does not make it live (activate:false, requireApproval) */
  auto_activate: boolean | number;
  approved_by: string | null;
  approved_at: unknown;
  created_at: unknown;
  updated_at: unknown;
}

/** The seed's storage layout: one archive per version. */
export function archiveKey(functionId: string, version: number): string {
  return `functions/${functionId}/v${version}/function.tar.gz`;
}

export const FUNCTION_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
