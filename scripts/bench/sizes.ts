// How much each scenario does: the full bench, and the smoke variant CI runs (seconds).
export interface Sizes {
  /** RUNNER_POLL_MS of the servers with a runner (the platform's default in the full bench) */
  runnerPollMs: number;
  /** the databases the docker driver parts run on (they do not depend on the database) */
  dockerDbs: ('sqlite' | 'postgres')[];
  /** requests sent before each HTTP measurement and not recorded (rollback settles instead: rollbackSettleRound) */
  warmup: number;
  rollbacks: number;
  /**
   * the rollback scenario's warm-up: rounds of this many rollbacks (even: they alternate v1 / v2)
   * and as many of each floor, until their rate settles, at most rollbackSettleRounds of them
   */
  rollbackSettleRound: number;
  rollbackSettleRounds: number;
  /** concurrent clients for the deploy scenario */
  deployConnections: number[];
  /** POST /deploy per level (and as many GET /healthz, its floor), in chunks alternating with it */
  deploysPerLevel: number;
  /**
   * the deploy scenario's warm-up before its first level: rounds of this many /deploy (and as many
   * /healthz) at 16 clients, until the /deploy rate settles (load.ts's warmUntilSettled), at most
   * deploySettleRounds of them, and at least deploySettleMinRounds
   */
  deploySettleRound: number;
  deploySettleRounds: number;
  deploySettleMinRounds: number;
  /** POST …/complete per level, of versions that level allocated; a fifth of it for the 1 MiB row */
  completesPerLevel: number;
  /** sequential upload → active runs */
  e2eProcessRuns: number;
  e2eDockerRuns: number;
  pickupNotifySamples: number;
  pickupPollSamples: number;
  /**
   * warm invocations (and as many requests to the bare HTTP floor) per level of clients, each
   * level in chunks alternating with its floor; 16 clients is the throughput level
   */
  warmRequests: { connections: number; requests: number }[];
  /** cold starts of a scaled-to-zero version, each followed by one of its floor */
  coldStartsProcess: number;
  coldStartsDocker: number;
  /**
   * requests to a function endpoint (and as many to its bare HTTP floor) per level of clients, in
   * chunks alternating with the floor; 16 clients is the throughput level
   */
  httpRequests: { connections: number; requests: number }[];
  /** one client through a `key` access endpoint (X-Function-Key), against the same floor */
  httpKeyRequests: number;
  /**
   * requests sent to the endpoint and to its floor before the first chunk of each level, not
   * recorded: enough for both processes' request paths to be compiled by the JIT, which 50 is not
   */
  httpWarmup: number;
  cleanupFunctions: number;
  cleanupVersions: number;
  cleanupKeep: number;
  /** the ARCHIVE_MODE=prefix variant, with real objects (functions × cleanupVersions) */
  cleanupPrefixFunctions: number;
  /** sample of bare S3 DELETEs for the cleanup floor */
  s3DeleteSample: number;
  historyVersions: number;
  historyRequests: number;
  /**
   * history: pages of each kind sent before either is measured, not recorded (the server's page
   * path compiled by the JIT for both, so the page measured first does not pay for it alone)
   */
  historyWarmup: number;
  /** the deep page: ?before= this version */
  historyDeepBefore: number;
}

export const FULL: Sizes = {
  runnerPollMs: 1000,
  dockerDbs: ['sqlite', 'postgres'],
  warmup: 50,
  rollbacks: 1000,
  rollbackSettleRound: 500,
  rollbackSettleRounds: 12,
  deployConnections: [1, 16, 64],
  deploysPerLevel: 2500,
  deploySettleRound: 1000,
  deploySettleRounds: 30,
  deploySettleMinRounds: 15,
  completesPerLevel: 500,
  e2eProcessRuns: 10,
  e2eDockerRuns: 5,
  pickupNotifySamples: 30,
  pickupPollSamples: 15,
  warmRequests: [
    { connections: 1, requests: 2000 },
    { connections: 16, requests: 4000 },
  ],
  coldStartsProcess: 20,
  coldStartsDocker: 10,
  httpRequests: [
    { connections: 1, requests: 2000 },
    { connections: 16, requests: 4000 },
  ],
  httpKeyRequests: 2000,
  httpWarmup: 1000,
  cleanupFunctions: 1000,
  cleanupVersions: 20,
  cleanupKeep: 10,
  cleanupPrefixFunctions: 100,
  s3DeleteSample: 2000,
  historyVersions: 10_000,
  historyRequests: 2500,
  historyWarmup: 2500,
  historyDeepBefore: 100,
};

export const SMOKE: Sizes = {
  // only to keep the smoke run short: its figures mean nothing
  runnerPollMs: 200,
  // a docker build is seconds on vfs: once is enough to know the code path works
  dockerDbs: ['sqlite'],
  warmup: 4,
  rollbacks: 20,
  rollbackSettleRound: 10,
  rollbackSettleRounds: 2,
  deployConnections: [1, 16],
  deploysPerLevel: 32,
  deploySettleRound: 16,
  deploySettleRounds: 2,
  deploySettleMinRounds: 1,
  completesPerLevel: 16,
  e2eProcessRuns: 1,
  e2eDockerRuns: 1,
  pickupNotifySamples: 3,
  pickupPollSamples: 2,
  warmRequests: [
    { connections: 1, requests: 10 },
    { connections: 16, requests: 32 },
  ],
  coldStartsProcess: 2,
  coldStartsDocker: 2,
  httpRequests: [
    { connections: 1, requests: 10 },
    { connections: 16, requests: 32 },
  ],
  httpKeyRequests: 10,
  httpWarmup: 4,
  cleanupFunctions: 5,
  cleanupVersions: 5,
  cleanupKeep: 2,
  cleanupPrefixFunctions: 5,
  s3DeleteSample: 20,
  historyVersions: 200,
  historyRequests: 20,
  historyWarmup: 4,
  historyDeepBefore: 100,
};
