// One typed configuration, parsed once at start. A bad value stops the process with the variable's
// name; nothing else in the codebase reads process.env for platform settings.
import path from 'node:path';
import { validate as cronValidate } from 'node-cron';
import { z } from 'zod';
import { isSecretsKey } from './secrets.ts';

const cron = { validate: cronValidate };

const MiB = 1024 * 1024;
/** API_MAX_WAITING_REQUESTS's default (api/http/turns.ts) */
export const DEFAULT_MAX_WAITING_REQUESTS = 10_000;

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
const url = (name: string) =>
  optionalString.refine((v) => v === undefined || /^[a-z][a-z0-9+.-]*:\/\//i.test(v), {
    message: `${name} must be a URL such as http://host:port`,
  });

const envSchema = z.object({
  PORT: int(8080).pipe(z.number().max(65535)),
  HOST: z.string().min(1).default('127.0.0.1'),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: optionalString.refine(
    (v) => v === undefined || /^postgres(ql)?:\/\//.test(v) || /^sqlite:/.test(v),
    { message: 'DATABASE_URL must be postgres://… (or sqlite:<file>); leave it unset for SQLite in DATA_DIR' },
  ),
  S3_ENDPOINT: url('S3_ENDPOINT'),
  S3_PUBLIC_ENDPOINT: url('S3_PUBLIC_ENDPOINT'),
  S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'S3_BUCKET must be a valid bucket name')
    .default('containerpub'),
  S3_REGION: z.string().min(1).default('us-east-1'),
  S3_ACCESS_KEY_ID: optionalString,
  S3_SECRET_ACCESS_KEY: optionalString,
  UPLOAD_URL_TTL_SECONDS: int(900, 1).pipe(z.number().max(7 * 24 * 3600)),
  MAX_ARCHIVE_BYTES: int(50 * MiB, 1),
  KEEP_LAST_N: int(10, 1),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  // json: one JSON object a line (for log shippers); pretty: readable (the default on a terminal)
  LOG_FORMAT: z.enum(['json', 'pretty']).optional(),
  // GET /metrics (Prometheus) asks for `Authorization: Bearer <METRICS_TOKEN>` when set
  METRICS_TOKEN: optionalString.refine((v) => v === undefined || v.length >= 16, {
    message: 'METRICS_TOKEN must be at least 16 characters',
  }),
  // a runner started alone (`npm run start:runner`) serves its Prometheus metrics on this port (0 or unset: not served)
  RUNNER_METRICS_PORT: int(0).pipe(z.number().max(65535)),

  RUNTIME_DRIVER: z.enum(['docker', 'process', 'auto']).default('auto'),
  RUNNER_CONCURRENCY: int(2, 1).pipe(z.number().max(64)),
  RUNNER_POLL_MS: int(1000, 10),
  RUNNER_LEASE_MS: int(30_000, 500),
  RUNNER_MAX_ATTEMPTS: int(3, 1),
  RUNNER_NOTIFY: z.enum(['on', 'off']).default('on'),
  RUNNER_ID: optionalString,
  REGISTRY: optionalString.refine((v) => v === undefined || /^[a-zA-Z0-9.-]+(:\d+)?(\/[a-z0-9._/-]+)?$/.test(v), {
    message: 'REGISTRY must be host[:port][/path], without a scheme',
  }),
  REGISTRY_API_URL: url('REGISTRY_API_URL'),
  FUNCTION_BASE_IMAGE: z.string().min(1).default('containerpub/node-base:20'),
  FUNCTION_TIMEOUT_MS: int(30_000, 100),
  FUNCTION_MEMORY_MB: int(256, 16),
  FUNCTION_CPUS: z.coerce.number().positive().max(64).default(1),
  FUNCTION_PIDS_LIMIT: int(128, 8),
  // network: "outbound" instances join this Docker network; "none" ones have loopback only
  FUNCTION_NETWORK: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/, 'FUNCTION_NETWORK must be a Docker network name').default('containerpub-functions'),
  FUNCTION_DEFAULT_NETWORK: z.enum(['none', 'outbound']).default('none'),
  FUNCTION_START_TIMEOUT_MS: int(10_000, 100),
  FUNCTION_IDLE_MS: int(300_000, 100),
  FUNCTION_MAX_INSTANCES: int(4, 1).pipe(z.number().max(1000)),
  FUNCTION_CONCURRENCY: int(1, 1).pipe(z.number().max(1000)),
  FUNCTION_QUEUE_MS: int(10_000, 0),
  FUNCTION_QUEUE_MAX: int(1000, 1),
  MAX_INSTANCES: int(32, 1),
  INSTANCE_DIR: optionalString,
  SHUTDOWN_GRACE_MS: int(10_000, 0),
  BUILD_LOG_MAX_BYTES: int(64 * 1024, 1024),
  /** how often a running build's new log lines are written for watchers (the event stream, the dashboard) */
  BUILD_LOG_FLUSH_MS: int(1000, 50).pipe(z.number().max(60_000)),
  // builds (issue 14): a whole build's time limit, retries with backoff, the limits of Dockerfile
  // builds, where dependencies come from, and which images a Dockerfile may build FROM
  BUILD_TIMEOUT_MS: int(600_000, 1000),
  BUILD_RETRY_BASE_MS: int(5000, 10),
  BUILD_MAX_ATTEMPTS: z.coerce.number().int().min(1).optional(),
  BUILD_MEMORY_MB: int(2048, 64),
  BUILD_CPUS: z.coerce.number().positive().max(64).default(1),
  BUILD_IO_TIMEOUT_MS: int(30_000, 100),
  NPM_REGISTRY: url('NPM_REGISTRY').default('https://registry.npmjs.org/'),
  ALLOWED_BASE_IMAGES: optionalString,

  CLEANUP_CRON: z
    .string()
    .trim()
    .default('0 * * * *')
    .refine((v) => v === 'off' || cron.validate(v), {
      message: 'CLEANUP_CRON must be a cron expression (5 fields, or 6 with seconds) or "off"',
    }),
  ARCHIVE_MODE: z.enum(['storage-class', 'prefix', 'delete']).default('prefix'),
  ARCHIVE_STORAGE_CLASS: z.string().regex(/^[A-Z_]+$/, 'must be an S3 storage class such as GLACIER_IR').default('GLACIER_IR'),
  UPLOAD_EXPIRY_GRACE_SECONDS: int(300, 0),
  INVOCATION_LOGS_KEEP: int(1000, 1),
  CLEANUP_CONCURRENCY: int(4, 1).pipe(z.number().max(64)),

  TOKEN_TTL_DAYS: int(30, 1).pipe(z.number().max(3650)),
  REGISTRATION: z.enum(['open', 'closed']).default('open'),
  AUTH_RATE_LIMIT_PER_MINUTE: int(10, 0),
  AUTH_RATE_LIMIT_PER_EMAIL_PER_MINUTE: int(10, 0),
  TRUST_PROXY: z.enum(['on', 'off']).default('off'),
  // the dashboard's session cookie: Secure always, never, or (auto) when the request came over https
  SESSION_COOKIE_SECURE: z.enum(['auto', 'true', 'false']).default('auto'),
  // per-account quotas; 0 turns one off
  MAX_FUNCTIONS_PER_USER: int(100),
  MAX_BUILDS_PER_USER: int(50),
  MAX_INSTANCES_PER_USER: int(16),
  MAX_ARCHIVE_BYTES_PER_USER: int(5 * 1024 * MiB),

  // a database that hangs (rather than refusing) must give timely 503s, not hung requests
  DB_QUERY_TIMEOUT_MS: int(15_000, 100),
  DB_ACQUIRE_TIMEOUT_MS: int(10_000, 100),
  PUBLIC_URL: url('PUBLIC_URL'),
  // function endpoints: {name}--{handle}.FUNCTIONS_DOMAIN routes to a function (unset: path URLs only)
  FUNCTIONS_DOMAIN: optionalString.refine((v) => v === undefined || /^(?=.{1,200}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]*[a-z0-9])?$/i.test(v), {
    message: 'FUNCTIONS_DOMAIN must be a domain name such as fn.example.com (no scheme, no port)',
  }),
  MAX_REQUEST_BYTES: int(6 * MiB, 0).pipe(z.number().max(64 * MiB)),
  // requests waiting for a turn of the API's event loop (api/http/turns.ts) before new ones get a 503
  API_MAX_WAITING_REQUESTS: int(DEFAULT_MAX_WAITING_REQUESTS, 1).pipe(z.number().max(1_000_000)),
  // progressive delivery: how often serving processes write their per-version metrics, how long
  // the per-minute buckets are kept, and how often the runner's canary controller looks at canaries
  METRICS_FLUSH_MS: int(1000, 50).pipe(z.number().max(60_000)),
  METRICS_RETENTION_DAYS: int(14, 1).pipe(z.number().max(3650)),
  CANARY_TICK_MS: int(1000, 50).pipe(z.number().max(60_000)),
  // live tails (GET /api/functions/:id/events/stream): open streams per user and process, how long
  // one lasts before the client resumes with Last-Event-ID, how often it looks for new rows
  EVENT_STREAMS_PER_USER: int(5, 1).pipe(z.number().max(1000)),
  EVENT_STREAM_MAX_SECONDS: int(300, 1).pipe(z.number().max(24 * 3600)),
  EVENT_STREAM_POLL_MS: int(250, 20).pipe(z.number().max(60_000)),
  UPLOAD_SIGNING_SECRET: optionalString.refine((v) => v === undefined || v.length >= 32, {
    message: 'UPLOAD_SIGNING_SECRET must be at least 32 characters',
  }),
  // the key function secrets are sealed under (shared/secrets.ts); unset: DATA_DIR/secrets.key.
  // The message never repeats the value.
  SECRETS_KEY: optionalString.refine((v) => v === undefined || isSecretsKey(v), {
    message: 'SECRETS_KEY must be 32 bytes: 64 hex characters or base64 (e.g. `openssl rand -base64 32`)',
  }),
});

export type Env = z.input<typeof envSchema>;

export interface Config {
  server: {
    port: number;
    host: string;
    /** on SIGTERM, how long in-flight requests may take to finish */
    shutdownGraceMs: number;
    /** requests waiting for a turn of the event loop before new ones are answered 503 (api/http/turns.ts) */
    maxWaitingRequests: number;
  };
  dataDir: string;
  database: { client: 'sqlite'; filename: string } | { client: 'pg'; url: string };
  s3: {
    /** undefined: start the embedded S3-compatible server */
    endpoint?: string;
    publicEndpoint?: string;
    bucket: string;
    region: string;
    accessKeyId?: string;
    secretAccessKey?: string;
  };
  uploads: {
    urlTtlSeconds: number;
    maxArchiveBytes: number;
    /** the API's address as clients reach it (upload URLs with the embedded S3); unset: the request's own */
    publicUrl?: string;
    /** HMAC key of API upload URLs; unset: generated once into DATA_DIR */
    signingSecret?: string;
  };
  retention: { keepLastN: number };
  runtime: {
    driver: 'docker' | 'process' | 'auto';
    /** host[:port] images are pushed to; unset: images stay in the local engine */
    registry?: string;
    /** the registry's HTTP API as this process reaches it, when not by the REGISTRY name */
    registryApiUrl?: string;
    baseImage: string;
    timeoutMs: number;
    memoryMb: number;
    cpus: number;
    pidsLimit: number;
    /** the Docker network of instances whose configuration says network "outbound" */
    network: string;
    /** the network mode of versions that do not set one */
    defaultNetwork: 'none' | 'outbound';
    /** how long a new instance may take to answer its readiness check */
    startTimeoutMs: number;
    /** one directory per running instance, holding its socket (mounted into its container) */
    instanceDir: string;
  };
  /** Platform-wide defaults of every version's pool of warm instances, and the host's cap. */
  instances: {
    idleMs: number;
    maxPerVersion: number;
    concurrency: number;
    queueMs: number;
    queueMax: number;
    maxTotal: number;
  };
  cleanup: {
    /** node-cron expression, or null when CLEANUP_CRON=off */
    cron: string | null;
    archiveMode: 'storage-class' | 'prefix' | 'delete';
    archiveStorageClass: string;
    uploadGraceSeconds: number;
    invocationLogsKeep: number;
    concurrency: number;
  };
  runner: {
    id?: string;
    concurrency: number;
    pollMs: number;
    leaseMs: number;
    maxAttempts: number;
    /** wake on NOTIFY (PostgreSQL) and on builds queued in this process, as well as by polling */
    notify: boolean;
    buildLogMaxBytes: number;
    buildLogFlushMs: number;
    /** the whole build (download, validation, build, push, readiness start), and the bound on waiting out an outage */
    buildTimeoutMs: number;
    /** a failed attempt waits retryBaseMs × 2^(attempt−1), ±20 % */
    retryBaseMs: number;
    /** one S3 or registry call (or a stalled transfer) gives up after this long */
    ioTimeoutMs: number;
    /** memory and CPU limits of Dockerfile builds */
    buildMemoryMb: number;
    buildCpus: number;
    /** the npm registry `npm ci` installs dependencies from at build time */
    npmRegistry: string;
    /** the images a Dockerfile's FROM lines may name (the platform's base image by default) */
    allowedBaseImages: string[];
  };
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** LOG_FORMAT; without it, pretty when stderr is a terminal */
  logFormat: 'json' | 'pretty';
  observability: {
    /** GET /metrics wants this bearer token; null: open */
    metricsToken: string | null;
    /** the runner's own metrics server (start:runner); null: none */
    runnerMetricsPort: number | null;
  };
  auth: {
    /** lifetime of the tokens login and register hand out, and the default for named tokens */
    tokenTtlDays: number;
    /** closed: POST /api/auth/register is refused; accounts come from `npm run users -- add` */
    registration: 'open' | 'closed';
    /** sign-up and login attempts per client address, and per email, per minute (0: no limit) */
    rateLimitPerAddress: number;
    rateLimitPerEmail: number;
    /** take the client address from X-Forwarded-For (its last entry) instead of the socket */
    trustProxy: boolean;
    /** the dashboard's cp_session cookie carries Secure: always, never, or when the request is https */
    sessionCookieSecure: 'auto' | 'true' | 'false';
  };
  endpoints: {
    /** host-based routing: {name}--{handle}.{functionsDomain}, lower case */
    functionsDomain?: string;
    /** the largest request body an endpoint (or POST …/invoke) accepts */
    maxRequestBytes: number;
  };
  /** progressive delivery (shared/domain/metrics.ts, runner/canary-controller.ts) */
  delivery: {
    metricsFlushMs: number;
    metricsRetentionDays: number;
    canaryTickMs: number;
  };
  /** live tails: GET /api/functions/:id/events/stream */
  eventStreams: { perUser: number; maxMs: number; pollMs: number };
  /** how long a query may run (PostgreSQL: statement_timeout and the client's wait) and a connection take */
  databaseTimeouts: { queryMs: number; acquireMs: number };
  /** per-account limits (null: no limit) */
  quotas: {
    maxFunctions: number | null;
    maxBuilds: number | null;
    maxInstances: number | null;
    maxArchiveBytes: number | null;
  };
  /** the key of function secrets (shared/secrets.ts): SECRETS_KEY, else the key file */
  secrets: {
    /** SECRETS_KEY as given (64 hex characters or base64 of 32 bytes); never log it */
    key?: string;
    /** DATA_DIR/secrets.key: read when SECRETS_KEY is unset, generated there by `npm start` */
    keyFile: string;
  };
}

export class ConfigError extends Error {}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.DATA_DIR);
  let database: Config['database'];
  if (e.DATABASE_URL === undefined) {
    database = { client: 'sqlite', filename: path.join(dataDir, 'containerpub.sqlite') };
  } else if (e.DATABASE_URL.startsWith('sqlite:')) {
    database = { client: 'sqlite', filename: path.resolve(e.DATABASE_URL.slice('sqlite:'.length)) };
  } else {
    database = { client: 'pg', url: e.DATABASE_URL };
  }
  if (e.S3_ENDPOINT && (!e.S3_ACCESS_KEY_ID || !e.S3_SECRET_ACCESS_KEY)) {
    throw new ConfigError(
      'invalid configuration:\n  S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY: required when S3_ENDPOINT is set',
    );
  }
  return {
    server: { port: e.PORT, host: e.HOST, shutdownGraceMs: e.SHUTDOWN_GRACE_MS, maxWaitingRequests: e.API_MAX_WAITING_REQUESTS },
    dataDir,
    database,
    s3: {
      endpoint: e.S3_ENDPOINT,
      publicEndpoint: e.S3_PUBLIC_ENDPOINT,
      bucket: e.S3_BUCKET,
      region: e.S3_REGION,
      accessKeyId: e.S3_ACCESS_KEY_ID,
      secretAccessKey: e.S3_SECRET_ACCESS_KEY,
    },
    uploads: {
      urlTtlSeconds: e.UPLOAD_URL_TTL_SECONDS,
      maxArchiveBytes: e.MAX_ARCHIVE_BYTES,
      publicUrl: e.PUBLIC_URL?.replace(/\/+$/, ''),
      signingSecret: e.UPLOAD_SIGNING_SECRET,
    },
    retention: { keepLastN: e.KEEP_LAST_N },
    runtime: {
      driver: e.RUNTIME_DRIVER,
      registry: e.REGISTRY,
      registryApiUrl: e.REGISTRY_API_URL,
      baseImage: e.FUNCTION_BASE_IMAGE,
      timeoutMs: e.FUNCTION_TIMEOUT_MS,
      memoryMb: e.FUNCTION_MEMORY_MB,
      cpus: e.FUNCTION_CPUS,
      pidsLimit: e.FUNCTION_PIDS_LIMIT,
      network: e.FUNCTION_NETWORK,
      defaultNetwork: e.FUNCTION_DEFAULT_NETWORK,
      startTimeoutMs: e.FUNCTION_START_TIMEOUT_MS,
      instanceDir: e.INSTANCE_DIR ? path.resolve(e.INSTANCE_DIR) : path.join(dataDir, 'instances'),
    },
    instances: {
      idleMs: e.FUNCTION_IDLE_MS,
      maxPerVersion: e.FUNCTION_MAX_INSTANCES,
      concurrency: e.FUNCTION_CONCURRENCY,
      queueMs: e.FUNCTION_QUEUE_MS,
      queueMax: e.FUNCTION_QUEUE_MAX,
      maxTotal: e.MAX_INSTANCES,
    },
    cleanup: {
      cron: e.CLEANUP_CRON === 'off' ? null : e.CLEANUP_CRON,
      archiveMode: e.ARCHIVE_MODE,
      archiveStorageClass: e.ARCHIVE_STORAGE_CLASS,
      uploadGraceSeconds: e.UPLOAD_EXPIRY_GRACE_SECONDS,
      invocationLogsKeep: e.INVOCATION_LOGS_KEEP,
      concurrency: e.CLEANUP_CONCURRENCY,
    },
    runner: {
      id: e.RUNNER_ID,
      concurrency: e.RUNNER_CONCURRENCY,
      pollMs: e.RUNNER_POLL_MS,
      leaseMs: e.RUNNER_LEASE_MS,
      // BUILD_MAX_ATTEMPTS is the documented name; RUNNER_MAX_ATTEMPTS its older spelling
      maxAttempts: e.BUILD_MAX_ATTEMPTS ?? e.RUNNER_MAX_ATTEMPTS,
      notify: e.RUNNER_NOTIFY === 'on',
      buildLogMaxBytes: e.BUILD_LOG_MAX_BYTES,
      buildLogFlushMs: e.BUILD_LOG_FLUSH_MS,
      buildTimeoutMs: e.BUILD_TIMEOUT_MS,
      retryBaseMs: e.BUILD_RETRY_BASE_MS,
      ioTimeoutMs: e.BUILD_IO_TIMEOUT_MS,
      buildMemoryMb: e.BUILD_MEMORY_MB,
      buildCpus: e.BUILD_CPUS,
      npmRegistry: e.NPM_REGISTRY,
      allowedBaseImages: e.ALLOWED_BASE_IMAGES
        ? e.ALLOWED_BASE_IMAGES.split(',').map((s) => s.trim()).filter(Boolean)
        : [e.FUNCTION_BASE_IMAGE],
    },
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT ?? (process.stderr.isTTY ? 'pretty' : 'json'),
    observability: { metricsToken: e.METRICS_TOKEN ?? null, runnerMetricsPort: e.RUNNER_METRICS_PORT || null },
    auth: {
      tokenTtlDays: e.TOKEN_TTL_DAYS,
      registration: e.REGISTRATION,
      rateLimitPerAddress: e.AUTH_RATE_LIMIT_PER_MINUTE,
      rateLimitPerEmail: e.AUTH_RATE_LIMIT_PER_EMAIL_PER_MINUTE,
      trustProxy: e.TRUST_PROXY === 'on',
      sessionCookieSecure: e.SESSION_COOKIE_SECURE,
    },
    endpoints: { functionsDomain: e.FUNCTIONS_DOMAIN?.toLowerCase(), maxRequestBytes: e.MAX_REQUEST_BYTES },
    delivery: { metricsFlushMs: e.METRICS_FLUSH_MS, metricsRetentionDays: e.METRICS_RETENTION_DAYS, canaryTickMs: e.CANARY_TICK_MS },
    eventStreams: { perUser: e.EVENT_STREAMS_PER_USER, maxMs: e.EVENT_STREAM_MAX_SECONDS * 1000, pollMs: e.EVENT_STREAM_POLL_MS },
    databaseTimeouts: { queryMs: e.DB_QUERY_TIMEOUT_MS, acquireMs: e.DB_ACQUIRE_TIMEOUT_MS },
    quotas: {
      maxFunctions: e.MAX_FUNCTIONS_PER_USER || null,
      maxBuilds: e.MAX_BUILDS_PER_USER || null,
      maxInstances: e.MAX_INSTANCES_PER_USER || null,
      maxArchiveBytes: e.MAX_ARCHIVE_BYTES_PER_USER || null,
    },
    secrets: { key: e.SECRETS_KEY, keyFile: path.join(dataDir, 'secrets.key') },
  };
}

/** For entry points: parse or exit with the message (no stack trace for a configuration mistake). */
export function loadConfigOrExit(env: Record<string, string | undefined> = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`containerpub: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
