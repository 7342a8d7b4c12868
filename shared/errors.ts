// One error type for everything a client can cause. Domain code throws these through the `errors`
// factory; only the API's error handler turns them into HTTP responses.

export type ErrorCode =
  | 'bad_request'
  | 'invalid_json'
  | 'validation_failed'
  | 'unauthorized'
  | 'invalid_credentials'
  | 'email_taken'
  | 'handle_taken'
  | 'not_found'
  | 'function_not_found'
  | 'version_not_found'
  | 'version_not_built'
  | 'archive_gone'
  | 'upload_missing'
  | 'payload_too_large'
  | 'checksum_mismatch'
  | 'size_mismatch'
  | 'unsupported_media_type'
  | 'no_active_deployment'
  | 'function_error'
  | 'function_crashed'
  | 'function_timeout'
  | 'capacity_exceeded'
  | 'image_rebuilding'
  | 'conflict'
  | 'unavailable'
  | 'internal'
  | 'registration_closed'
  | 'rate_limited'
  | 'driver_mismatch'
  | 'quota_exceeded'
  | 'upload_expired'
  | 'upload_used'
  | 'upload_url_invalid'
  | 'canary_running'
  | 'no_candidate'
  | 'tag_not_found'
  | 'csrf_failed';

const statusByCode: Record<ErrorCode, number> = {
  bad_request: 400,
  invalid_json: 400,
  validation_failed: 400,
  unauthorized: 401,
  invalid_credentials: 401,
  email_taken: 409,
  handle_taken: 409,
  not_found: 404,
  function_not_found: 404,
  version_not_found: 404,
  version_not_built: 409,
  archive_gone: 409,
  upload_missing: 409,
  payload_too_large: 413,
  checksum_mismatch: 422,
  size_mismatch: 422,
  unsupported_media_type: 415,
  no_active_deployment: 409,
  function_error: 502,
  function_crashed: 502,
  function_timeout: 504,
  capacity_exceeded: 429,
  image_rebuilding: 503,
  conflict: 409,
  canary_running: 409,
  no_candidate: 409,
  tag_not_found: 404,
  csrf_failed: 403,
  unavailable: 503,
  internal: 500,
  registration_closed: 403,
  rate_limited: 429,
  driver_mismatch: 503,
  quota_exceeded: 403,
  upload_expired: 410,
  upload_used: 409,
  upload_url_invalid: 403,
};

export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    /** when to try again (sent as Retry-After) */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'AppError';
    this.status = statusByCode[code];
  }
}

export const errors = {
  badRequest: (message: string, details?: Record<string, unknown>) =>
    new AppError('bad_request', message, details),
  invalidJson: () => new AppError('invalid_json', 'request body is not valid JSON'),
  validation: (message: string, details?: Record<string, unknown>) =>
    new AppError('validation_failed', message, details),
  unauthorized: (message = 'missing or invalid bearer token') => new AppError('unauthorized', message),
  /** a change made with the browser session's cookie that does not prove it came from our own page */
  csrfFailed: (message: string) => new AppError('csrf_failed', message),
  invalidCredentials: () => new AppError('invalid_credentials', 'wrong email or password'),
  emailTaken: () => new AppError('email_taken', 'an account with this email already exists'),
  handleTaken: (handle: string) => new AppError('handle_taken', `the handle "${handle}" is taken`, { handle }),
  notFound: (what = 'resource') => new AppError('not_found', `${what} not found`),
  functionNotFound: () => new AppError('function_not_found', 'function not found'),
  versionNotFound: (version: number) =>
    new AppError('version_not_found', `version ${version} does not exist`, { version }),
  versionNotBuilt: (version: number, status: string) =>
    new AppError('version_not_built', `version ${version} is ${status}, not a built version`, {
      version,
      status,
    }),
  archiveGone: (version: number) =>
    new AppError('archive_gone', `version ${version} cannot be restored: its archive was deleted`, {
      version,
    }),
  uploadMissing: (key: string) =>
    new AppError('upload_missing', `no archive has been uploaded to ${key} yet`),
  tooLarge: (limit: number, actual?: number, what: 'archive' | 'event' | 'request body' = 'archive') =>
    new AppError(
      'payload_too_large',
      actual === undefined
        ? `${what} exceeds the limit of ${limit} bytes`
        : `${what} is ${actual} bytes, over the limit of ${limit} bytes`,
      { limit, ...(actual === undefined ? {} : { actual }) },
    ),
  checksumMismatch: (declared: string, actual: string) =>
    new AppError('checksum_mismatch', `uploaded archive has sha256 ${actual}, declared ${declared}`, {
      declared,
      actual,
    }),
  sizeMismatch: (declared: number, actual: number) =>
    new AppError('size_mismatch', `uploaded archive is ${actual} bytes, declared ${declared}`, {
      declared,
      actual,
    }),
  unsupportedMediaType: (message: string) => new AppError('unsupported_media_type', message),
  noActiveDeployment: () =>
    new AppError('no_active_deployment', 'function has no live deployment yet'),
  conflict: (message: string, details?: Record<string, unknown>) => new AppError('conflict', message, details),
  canaryRunning: (version: number) =>
    new AppError('canary_running', `a canary of version ${version} is running: abort it first (DELETE …/canary)`, { version }),
  noCandidate: () => new AppError('no_candidate', 'this function has no candidate version to promote (PUT …/traffic sets one)'),
  tagNotFound: (tag: string) => new AppError('tag_not_found', `no version is tagged "${tag}"`, { tag }),
  unavailable: (message: string, retryAfterSeconds?: number) =>
    new AppError('unavailable', message, undefined, retryAfterSeconds),
  uploadExpired: (version: number) =>
    new AppError('upload_expired', `the upload of version ${version} expired; deploy again for a new URL`, { version }),
  uploadUsed: () =>
    new AppError('upload_used', 'this upload URL has already been used (or an upload through it is under way)'),
  uploadUrlInvalid: () => new AppError('upload_url_invalid', 'the upload URL is not valid (bad or missing signature)'),
  registrationClosed: () =>
    new AppError('registration_closed', 'sign-up is closed on this platform: ask an administrator for an account'),
  // The same words whatever was limited (address or email), so a 429 tells nothing about an account.
  rateLimited: (retryAfterSeconds: number) =>
    new AppError('rate_limited', `too many sign-up or login attempts; try again in ${retryAfterSeconds} s`, undefined, retryAfterSeconds),
};

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/**
 * A per-account quota is used up. A standing limit (functions, archive bytes) is a 403: retrying
 * will not help until something is deleted. A limit on work under way (builds, instances) is a 429
 * with Retry-After: it frees itself.
 */
export class QuotaError extends AppError {
  override readonly status: number;
  constructor(limit: string, max: number, message: string, retryAfterSeconds?: number) {
    super('quota_exceeded', message, { limit, max }, retryAfterSeconds);
    this.status = retryAfterSeconds === undefined ? 403 : 429;
  }
}

/** A version was built by one runtime driver and this process runs another (see version-driver.ts). */
export function driverMismatch(version: number, builtBy: string, running: string): AppError {
  return new AppError(
    'driver_mismatch',
    `version ${version} was built by the ${builtBy} driver, but this process runs the ${running} driver; ` +
      `serve it from a process with RUNTIME_DRIVER=${builtBy}, or redeploy it`,
    { version, builtBy, running },
  );
}
