// The routing table of the serving process: for each function, its owner, its live version, its
// candidate and its tagged versions,
// cached so that a warm invocation makes no database round trip. An entry is dropped the moment a
// change to its function is announced (function-changes.ts): in this process at once, from other
// processes through NOTIFY. On SQLite, a commit by another process (a separate runner) is noticed
// through `PRAGMA data_version` and drops every entry. On PostgreSQL without a working NOTIFY feed
// (the connection is down), entries live one second only.
import type { Db } from '../db/knex.ts';
import { bool, num, sqliteDataVersion } from '../db/dialect.ts';
import { readDirect } from '../db/direct-reads.ts';
import { accessOf, type AccessMode } from './access.ts';
import type { DeploymentStatus } from './model.ts';
import { parseStoredConfig, type StoredConfig } from './release-config.ts';
import { versionDriver, type DriverName } from './version-driver.ts';

export interface LiveDeployment {
  deploymentId: string;
  version: number;
  imageTag: string | null;
  status: DeploymentStatus;
  /** the runtime driver that built it */
  driver: DriverName;
  /** the configuration it runs with, as stored */
  config: StoredConfig;
}

export interface LiveRoute {
  functionId: string;
  userId: string;
  /** who may call its endpoint */
  access: AccessMode;
  /** null: nothing is live yet */
  live: LiveDeployment | null;
  /** the version beside the live one, with the share of traffic it takes (traffic.ts) */
  candidate: (LiveDeployment & { percent: number }) | null;
  /** a caller's traffic key keeps it on one version */
  sticky: boolean;
  /** tag → the version it points at (tags.ts) */
  tags: ReadonlyMap<string, LiveDeployment>;
}

const TTL_WITH_FEED_MS = 60_000;
const TTL_WITHOUT_FEED_MS = 1_000;
const MAX_ENTRIES = 10_000;
/** An address that named no function is asked again after this long (a flood of them stays cheap). */
const MISS_TTL_MS = 1_000;

export class LiveRoutes {
  /** `intent`: the function's live intent the route was read or switched at (it only grows) */
  private readonly entries = new Map<string, { route: LiveRoute; intent: number; at: number }>();
  /** bumped by every invalidation: a lookup that raced with one is not cached */
  private epoch = 0;
  /** SQLite: the data_version the entries were read under */
  private dataVersion: number | null = null;
  /** endpoint addresses ("handle/name") to function ids: a function keeps its id and name for life */
  private readonly addresses = new Map<string, { functionId: string | null; at: number }>();
  /** reads under way, with the epoch they started in */
  private readonly loading = new Map<string, { epoch: number; promise: Promise<Loaded | null> }>();

  constructor(
    private readonly db: Db,
    /** whether changes made by other processes reach this one (a healthy NOTIFY feed) */
    private readonly feedHealthy: () => boolean,
  ) {}

  /** The function's route, or null when it does not exist. */
  async get(functionId: string): Promise<LiveRoute | null> {
    if (this.db.dialect === 'sqlite') {
      const version = await sqliteDataVersion(this.db);
      if (version !== this.dataVersion) {
        this.dataVersion = version;
        this.clear();
      }
    }
    const hit = this.entries.get(functionId);
    const ttl = this.feedHealthy() || this.db.dialect === 'sqlite' ? TTL_WITH_FEED_MS : TTL_WITHOUT_FEED_MS;
    if (hit && performance.now() - hit.at < ttl) return hit.route;
    const epoch = this.epoch;
    // A load under way since the last invalidation is shared: the reload a change triggers and the
    // request right behind it (its tenant check) then make one read, not two.
    let pending = this.loading.get(functionId);
    if (!pending || pending.epoch !== epoch) {
      const started = { epoch, promise: this.load(functionId) };
      this.loading.set(functionId, started);
      const done = () => {
        if (this.loading.get(functionId) === started) this.loading.delete(functionId);
      };
      started.promise.then(done, done);
      pending = started;
    }
    const loaded = await pending.promise;
    if (loaded && epoch === this.epoch) {
      this.entries.delete(functionId);
      this.entries.set(functionId, { ...loaded, at: performance.now() });
      if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    }
    return loaded?.route ?? null;
  }

  /**
   * The route of the function an endpoint address names (`/fn/{handle}/{name}`), or null. A name
   * freed by a deletion and taken again by a new function resolves to the new one.
   */
  async byAddress(handle: string, name: string): Promise<LiveRoute | null> {
    const key = `${handle}/${name}`;
    const hit = this.addresses.get(key);
    if (hit && (hit.functionId !== null || performance.now() - hit.at < MISS_TTL_MS)) {
      if (hit.functionId === null) return null;
      const route = await this.get(hit.functionId);
      if (route) return route;
    }
    const row = await this.db
      .knex('functions as f')
      .join('users as u', 'u.id', 'f.user_id')
      .where({ 'u.handle': handle, 'f.name': name })
      .first('f.id');
    this.addresses.delete(key);
    this.addresses.set(key, { functionId: row?.id ?? null, at: performance.now() });
    if (this.addresses.size > MAX_ENTRIES) this.addresses.delete(this.addresses.keys().next().value!);
    return row ? this.get(row.id) : null;
  }

  invalidate(functionId: string): void {
    this.epoch++;
    this.entries.delete(functionId);
  }

  /**
   * A switch of the live version this process committed (a rollback): the cached route takes the
   * new live version and loses its candidate, as the switch wrote them, instead of being read again
   * on the next request's path. With nothing cached, the same as invalidate(). Concurrent switches
   * of one function commit one after the other, but their callers may get here in another order:
   * a switch older than the route cached (a smaller intent) is not the live one, and changes
   * nothing (it served version 2 of a function whose live version was 1, until the entry expired).
   */
  switchLive(functionId: string, live: LiveDeployment, intent: number): void {
    const hit = this.entries.get(functionId);
    if (hit && hit.intent >= intent) return;
    this.invalidate(functionId);
    if (hit) this.entries.set(functionId, { route: { ...hit.route, live, candidate: null }, intent, at: hit.at });
  }

  clear(): void {
    this.epoch++;
    this.entries.clear();
    this.addresses.clear();
  }

  /**
   * The seed's execution query: the function and its active deployment, checked on both sides;
   * with the candidate beside it and the tagged versions.
   */
  private async load(functionId: string): Promise<Loaded | null> {
    // One read of the function with its live version and its candidate, one of its tags, not
    // through knex: a route is read again after every change, on the path of the next request.
    const [rows, tagged] = (await readDirect(this.db, [
      { sql: ROUTE_SQL, bindings: [functionId] },
      { sql: TAGS_SQL, bindings: [functionId] },
    ])) as [RouteRow[], (DeploymentRow & { tag: string })[]];
    const row = rows[0];
    if (!row) return null;
    return { route: toRoute(functionId, row, tagged), intent: num(row.active_intent_seq) };
  }
}

interface Loaded {
  route: LiveRoute;
  intent: number;
}

interface DeploymentRow {
  deployment_id: string;
  version: unknown;
  image_tag: string | null;
  status: DeploymentStatus;
  is_active: unknown;
  runtime_driver: string | null;
  config: string;
}
type RouteRow = Partial<DeploymentRow> & {
  user_id: string;
  active_intent_seq: unknown;
  access: string;
  candidate_deployment_id: string | null;
  candidate_percent: unknown;
  traffic_sticky: unknown;
} & { [K in keyof DeploymentRow as `cand_${K}`]: DeploymentRow[K] | null };

const DEPLOYMENT_COLUMNS = ['config', 'id AS deployment_id', 'version', 'image_tag', 'status', 'is_active', 'runtime_driver'];
const columns = (alias: string, prefix = '') =>
  DEPLOYMENT_COLUMNS.map((c) => {
    const [column, name = column] = c.split(' AS ');
    return `${alias}.${column} AS ${prefix}${name}`;
  }).join(', ');
// The same SQL on both databases (`?`: bound by better-sqlite3, filled in as a literal by pg-direct).
const ROUTE_SQL =
  `SELECT f.user_id, f.access, f.active_intent_seq, f.candidate_deployment_id, f.candidate_percent, f.traffic_sticky, ${columns('d')}, ${columns('c', 'cand_')} ` +
  'FROM functions f LEFT JOIN function_deployments d ON d.id = f.active_deployment_id ' +
  'LEFT JOIN function_deployments c ON c.id = f.candidate_deployment_id WHERE f.id = ?';
const TAGS_SQL = `SELECT t.tag, ${columns('d')} FROM function_tags t JOIN function_deployments d ON d.id = t.deployment_id WHERE t.function_id = ?`;

function toRoute(functionId: string, row: RouteRow, tagged: (DeploymentRow & { tag: string })[]): LiveRoute {
  const live = row.deployment_id && bool(row.is_active) ? liveDeployment(row as DeploymentRow) : null;
  // a candidate only beside a live version
  const candidate =
    live && row.cand_deployment_id
      ? {
          ...liveDeployment({
            deployment_id: row.cand_deployment_id,
            version: row.cand_version,
            image_tag: row.cand_image_tag,
            status: row.cand_status!,
            runtime_driver: row.cand_runtime_driver,
            config: row.cand_config!,
          }),
          percent: num(row.candidate_percent),
        }
      : null;
  const tags = new Map<string, LiveDeployment>();
  for (const t of tagged) tags.set(t.tag, liveDeployment(t));
  return { functionId, userId: row.user_id, access: accessOf(row.access), live, candidate, sticky: bool(row.traffic_sticky), tags };
}

/** The route's view of a deployment row (its id as deployment_id). */
export function liveDeployment(row: { deployment_id: string; version: unknown; image_tag: string | null; status: DeploymentStatus; runtime_driver: string | null; config: string }): LiveDeployment {
  return { deploymentId: row.deployment_id, version: num(row.version), imageTag: row.image_tag ?? null, status: row.status, driver: versionDriver(row), config: parseStoredConfig(row.config) };
}
