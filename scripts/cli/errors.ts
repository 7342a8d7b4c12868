// The CLI's one error type: a message meant for the user and the exit code it stands for.
// main.ts prints `error: <message>` on one line and exits with `exitCode`; anything else that
// escapes is a bug and is printed with its stack.

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** not logged in, or the API refused the credentials (401) */
export const EXIT_AUTH = 3;

/** For --help and the README: one table, so the two cannot disagree. */
export const EXIT_CODES_HELP = [
  'Exit codes:',
  '  0  ok',
  '  1  failure (the API refused the request, a build failed, the API cannot be reached)',
  '  2  usage error (unknown command or option, a missing or malformed argument)',
  '  3  authentication: not logged in, or the API refused the token or the credentials (401)',
].join('\n');

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Bad arguments: exit code 2, with a pointer to the command's help. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT_USAGE);
    this.name = 'UsageError';
  }
}

/** The API answered with an error envelope `{error: {code, message}}` (or something unexpected). */
export class ApiError extends CliError {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message, status === 401 ? EXIT_AUTH : EXIT_FAILURE);
    this.name = 'ApiError';
  }
}

export function isCliError(err: unknown): err is CliError {
  return err instanceof CliError;
}
