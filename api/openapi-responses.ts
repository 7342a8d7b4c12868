// The JSON each route answers, as zod schemas: the OpenAPI document's response schemas
// (api/openapi.ts), and what the integration tests check every answer against
// (tests/support/documented.ts). Objects are strict: a field a view gains must be added here, or
// the tests that see it fail, naming the field.
import { z } from 'zod';
import { ACCESS_MODES } from '../shared/domain/access.ts';
import { UUID_PATTERN } from '../shared/domain/model.ts';
import { deployMetadataSchema, NETWORK_MODES } from '../shared/domain/release-config.ts';

const uuid = z.string().regex(UUID_PATTERN, 'must be a UUID');
const int = z.number().int().min(0);
const iso = z.string().meta({ description: 'a time, ISO 8601 (UTC)', format: 'date-time' });
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256');
const message = z.string().meta({ description: 'a sentence for a person to read' });

export const healthView = z.strictObject({ status: z.literal('ok') });
/** one dependency of /readyz and /api/status: did it answer, how fast, why not */
const dependencyCheck = z.strictObject({ ok: z.boolean(), latencyMs: z.number().min(0), error: z.string().optional() });
const readyChecks = z.strictObject({
  database: dependencyCheck,
  storage: dependencyCheck,
  engine: dependencyCheck.optional().meta({ description: 'with the docker driver' }),
  registry: dependencyCheck.optional().meta({ description: 'with REGISTRY set' }),
});
export const readyView = z.strictObject({ status: z.literal('ready'), database: z.literal('ok'), storage: z.literal('ok'), checks: readyChecks });
/** /readyz's 503: the error envelope, with what each dependency said */
export const notReadyView = z.strictObject({
  error: z.strictObject({ code: z.literal('unavailable'), message: z.string() }),
  database: z.string(),
  storage: z.string(),
  checks: readyChecks,
});
/** GET /api/status (api/routes/status.ts) */
export const statusView = z.strictObject({
  version: z.string(),
  database: dependencyCheck.extend({ dialect: z.enum(['sqlite', 'pg']) }),
  storage: dependencyCheck,
  driver: z.string().nullable(),
  runners: z.array(
    z.strictObject({
      id: z.string(),
      startedAt: iso.nullable(),
      lastSeenAt: iso.nullable(),
      driver: z.string().nullable(),
      version: z.string().nullable(),
      hostname: z.string().nullable(),
      pid: z.number().int().nullable(),
      concurrency: z.number().int().nullable(),
      runningBuilds: int,
    }),
  ),
  queue: z.strictObject({ depth: int, oldestQueuedAt: iso.nullable() }),
}).meta({ id: 'PlatformStatus' });

// ------------------------------------------------------------------------------- accounts

export const sessionView = z.strictObject({ userId: uuid, token: z.string().meta({ description: 'a bearer token (cp_…)' }) });
export const registeredView = sessionView.extend({ handle: z.string() });
export const accountView = z.strictObject({ userId: uuid, email: z.string(), handle: z.string() }).meta({ id: 'Account' });
/** the dashboard's session (POST/GET /api/auth/session): the account, and the proof its changes must carry */
export const browserSessionView = z
  .strictObject({
    userId: uuid,
    email: z.string(),
    handle: z.string(),
    csrfToken: z.string().meta({ description: 'send it as X-CSRF-Token with every change made with the session cookie' }),
  })
  .meta({ id: 'BrowserSession' });
export const tokenView = z.strictObject({
  id: uuid,
  name: z.string(),
  createdAt: iso,
  lastUsedAt: iso.nullable(),
  expiresAt: iso,
  current: z.boolean().meta({ description: 'the token this request was made with' }),
}).meta({ id: 'Token' });
export const tokenList = z.strictObject({ tokens: z.array(tokenView) });
export const issuedToken = z.strictObject({
  id: uuid,
  name: z.string(),
  token: z.string().meta({ description: 'the secret, shown once' }),
  createdAt: iso,
  expiresAt: iso,
});

// ------------------------------------------------------------------------------ functions

export const trafficShare = z.strictObject({
  version: int,
  deploymentId: uuid,
  percent: int,
  role: z.enum(['live', 'candidate']),
}).meta({ id: 'TrafficShare' });

export const functionView = z.strictObject({
  id: uuid,
  name: z.string(),
  status: z.string().meta({ description: 'pending until a version goes live, then active; failed when every version failed' }),
  activeVersion: int.nullable(),
  activeDeploymentId: uuid.nullable(),
  latestVersion: int,
  access: z.enum(ACCESS_MODES),
  url: z.string().meta({ description: 'its endpoint, path form: {origin}/fn/{handle}/{name}' }),
  hostUrl: z.string().optional().meta({ description: 'its endpoint, host form (when FUNCTIONS_DOMAIN is set)' }),
  traffic: z.array(trafficShare),
  sticky: z.boolean(),
  requireApproval: z.boolean(),
  createdAt: iso.nullable(),
  updatedAt: iso.nullable(),
  lastDeployedAt: iso.nullable().meta({ description: 'when its newest version was asked for (a deploy or a configuration change)' }),
}).meta({ id: 'Function' });
export const functionSummary = functionView
  .extend({
    lastHour: z
      .strictObject({ requests: int, errors: int.meta({ description: 'errors, timeouts, crashes and 5xx answers' }) })
      .meta({ description: 'invocations over the last hour, every version and serving process (what is not flushed yet, up to METRICS_FLUSH_MS, is not in it)' }),
  })
  .meta({ id: 'FunctionSummary' });
export const functionList = z.strictObject({ functions: z.array(functionSummary) });

export const configView = z.strictObject({
  env: z.record(z.string(), z.string()),
  secrets: z.array(z.string()).meta({ description: 'secret names only, never values' }),
  memoryMb: int,
  timeoutMs: int,
  minInstances: int,
  maxInstances: int,
  concurrency: int,
  network: z.enum(NETWORK_MODES),
}).meta({ id: 'Config' });
export const currentConfigView = configView.extend({ version: int.nullable() });
export const configChangeView = z.strictObject({
  id: uuid,
  version: int,
  deploymentId: uuid,
  status: z.string(),
  source: z.literal('config'),
});

// ---------------------------------------------------------------------------- deployments

export const deploymentView = z.strictObject({
  id: uuid,
  version: int,
  source: z.enum(['deploy', 'config']),
  config: configView,
  metadata: deployMetadataSchema.nullable(),
  imageTag: z.string().nullable(),
  s3Key: z.string(),
  status: z.enum(['pending_upload', 'building', 'active', 'failed', 'archiving', 'archived', 'deleted']),
  isActive: z.boolean().meta({ description: 'the live version' }),
  deployedAt: iso.nullable(),
  activatedAt: iso.nullable(),
  createdAt: iso.nullable(),
  error: z.string().nullable(),
  lastError: z.string().nullable(),
  nextAttemptAt: iso.nullable(),
  sizeBytes: int.nullable(),
  sha256: sha256.nullable(),
  attempts: int,
  archiveKey: z.string().nullable(),
  archiveStorageClass: z.string().nullable(),
  archivedAt: iso.nullable(),
  cleanupNote: z.string().nullable(),
  tags: z.array(z.string()),
  awaitingApproval: z.boolean(),
  approvedBy: z.string().nullable(),
  approvedAt: iso.nullable(),
}).meta({ id: 'Deployment' });
export const deploymentDetailView = deploymentView.extend({ buildLogs: z.string().nullable() }).meta({ id: 'DeploymentDetail' });
export const deploymentHistory = z.strictObject({
  deployments: z.array(deploymentView),
  nextBefore: int.nullable().meta({ description: 'pass as ?before= for the next (older) page; null on the last' }),
});

const deployed = {
  id: uuid,
  name: z.string(),
  version: int,
  deploymentId: uuid,
  status: z.string(),
  isNewFunction: z.boolean(),
  createdAt: iso.nullable(),
};
export const deployedView = z.strictObject(deployed);
export const presignedDeployView = z.strictObject({
  ...deployed,
  upload: z.strictObject({
    method: z.literal('PUT'),
    url: z.string().meta({ description: 'PUT the archive here (an S3 presigned URL, or the API\'s own /api/uploads/… while S3 is embedded)' }),
    headers: z.record(z.string(), z.string()).meta({ description: 'send these headers with the PUT' }),
    expiresAt: iso,
  }),
});
export const completeView = z.strictObject({ deploymentId: uuid, version: int, status: z.string() });
export const uploadStoredView = z.strictObject({ deploymentId: uuid, version: int, sizeBytes: int, sha256 });

const configValue = z.union([z.string(), z.number()]);
export const comparisonView = z.strictObject({
  code: z.strictObject({ changed: z.boolean(), sha256: z.tuple([sha256.nullable(), sha256.nullable()]) }),
  config: z.strictObject({
    added: z.record(z.string(), configValue),
    removed: z.record(z.string(), configValue),
    changed: z.record(z.string(), z.strictObject({ from: configValue, to: configValue })),
  }),
});

/** rollback and approve: done at once (200) */
export const versionLiveView = z.strictObject({ message, version: int, deploymentId: uuid });
/** rollback and approve of an archived version: restored first (202) */
export const versionRestoringView = z.strictObject({ message, version: int, deploymentId: uuid, status: z.literal('building') });
export const promotedView = z.strictObject({ message, version: int, deploymentId: uuid, previousVersion: int.nullable() });

// ---------------------------------------------------------------------- delivery, keys

export const tagView = z.strictObject({ tag: z.string(), version: int, deploymentId: uuid, updatedAt: iso.nullable() }).meta({ id: 'Tag' });
export const tagList = z.strictObject({ tags: z.array(tagView) });

export const functionKeyView = z.strictObject({ id: uuid, name: z.string(), createdAt: iso, lastUsedAt: iso.nullable() }).meta({ id: 'FunctionKey' });
export const functionKeyList = z.strictObject({ keys: z.array(functionKeyView) });
export const issuedFunctionKey = z.strictObject({
  id: uuid,
  name: z.string(),
  key: z.string().meta({ description: 'the secret (fk_…), shown once' }),
  createdAt: iso,
});

const figures = {
  requests: int,
  errors: int,
  timeouts: int,
  crashes: int,
  errorRate: z.number(),
  p50Ms: z.number().nullable(),
  p99Ms: z.number().nullable(),
};
const windowFigures = z.strictObject(figures);
export const canaryView = z.strictObject({
  id: uuid,
  functionId: uuid,
  version: int,
  deploymentId: uuid,
  status: z.enum(['running', 'promoted', 'rolled_back', 'aborted']),
  steps: z.array(int),
  stepIndex: int,
  percent: int,
  intervalSeconds: int,
  maxErrorRate: z.number(),
  maxP99Ms: int.nullable(),
  minRequests: int,
  stepStartedAt: iso.nullable(),
  nextEvaluationAt: iso.nullable(),
  window: z
    .union([z.strictObject({ ...figures, since: iso }), windowFigures])
    .nullable()
    .meta({ description: 'running: the current step so far; ended: the last evaluation' }),
  lastEvaluation: z
    .strictObject({
      ...figures,
      stepIndex: int,
      percent: int,
      verdict: z.enum(['waiting', 'advanced', 'promoted', 'rolled_back']),
      elapsedMs: z.number(),
      at: iso,
    })
    .nullable(),
  reason: z.string().nullable(),
  startedBy: z.string().nullable(),
  createdAt: iso.nullable(),
  updatedAt: iso.nullable(),
  finishedAt: iso.nullable(),
}).meta({ id: 'Canary' });

// ---------------------------------------------------------------- running and watching

export const invokeResultView = z.strictObject({
  result: z.unknown().meta({ description: "the function's return value" }),
  version: int,
  deploymentId: uuid,
  requestId: z.string().meta({ description: "the request's X-Request-Id: the caller's when it sent a sane one, else a UUID" }),
  durationMs: z.number(),
});
export const invocationList = z.strictObject({
  invocations: z.array(
    z.strictObject({
      id: int,
      requestId: z.string(),
      version: int,
      deploymentId: uuid,
      outcome: z.string(),
      durationMs: z.number(),
      method: z.string().nullable().meta({ description: 'endpoint invocations: the request method; null for POST …/invoke' }),
      path: z.string().nullable(),
      status: int.nullable(),
      logs: z.string().nullable(),
      error: z.string().nullable(),
      createdAt: iso.nullable(),
    }),
  ),
});
export const eventList = z.strictObject({
  logs: z.array(
    z.strictObject({
      id: int,
      deploymentId: uuid.nullable(),
      version: int.nullable(),
      event: z.string(),
      message: z.string(),
      createdAt: iso.nullable(),
    }),
  ),
});
export const metricsView = z.strictObject({
  minutes: int,
  versions: z.array(
    z.strictObject({
      version: int,
      deploymentId: uuid,
      totals: z.strictObject({ ...figures, avgMs: z.number().nullable() }),
      series: z.array(
        z.strictObject({
          minute: iso,
          requests: int,
          errors: int,
          timeouts: int,
          crashes: int,
          p50Ms: z.number().nullable(),
          p99Ms: z.number().nullable(),
        }),
      ),
    }),
  ),
});
export const instanceList = z.strictObject({
  instances: z.array(
    z.strictObject({
      id: z.string(),
      version: int,
      state: z.enum(['starting', 'idle', 'busy']),
      startedAt: iso,
      lastUsedAt: iso.nullable(),
      invocations: int,
    }),
  ),
});
