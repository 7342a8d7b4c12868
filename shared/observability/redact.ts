// What must never reach a log line, removed at the last moment (from the serialized line), so that
// no call site can leak it by passing the wrong field: function secret values opened in this
// process, bearer tokens, the platform's own token formats and presigned URL signatures. Fields
// known to hold such things are also redacted by name (REDACT_PATHS, pino's redact).

export const REDACTED = '[redacted]';

/** Field paths redacted by name (pino redact syntax; `*` is one level). */
export const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'headers.cookie',
  'cookie',
  'token',
  'password',
  'secret',
  'secrets',
  'key',
  'secretAccessKey',
  'signingSecret',
  'presignedUrl',
  'uploadUrl',
  'upload.url',
  'upload.headers',
].flatMap((p) => [p, `*.${p}`]);

const PATTERNS: [RegExp, string][] = [
  // Authorization header values quoted anywhere (a message, an error)
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  // API tokens (cp_…) and function keys (fk_…): shared/domain/tokens.ts, function-keys.ts
  [/\b(cp|fk)_[A-Za-z0-9_-]{20,}/g, `$1_${REDACTED}`],
  // presigned S3 URLs and the API's own signed upload URLs: the signature is the credential
  [/(X-Amz-(?:Signature|Credential|Security-Token)=)[^&"\s]+/gi, `$1${REDACTED}`],
  [/([?&]sig=)[^&"\s]+/g, `$1${REDACTED}`],
];

/** Secret values this process opened; a FIFO bounded so that a long-lived process does not grow. */
const MAX_SECRET_VALUES = 5_000;
/** Shorter values would redact ordinary words; such a value is no secret worth the name anyway. */
const MIN_SECRET_LENGTH = 6;
const secretValues = new Set<string>();
let secretPattern: RegExp | null = null;

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Called where secrets are opened (shared/secrets.ts): their values are scrubbed from every log line. */
export function rememberSecretValue(value: string): void {
  if (value.length < MIN_SECRET_LENGTH || secretValues.has(value)) return;
  if (secretValues.size >= MAX_SECRET_VALUES) secretValues.delete(secretValues.values().next().value!);
  secretValues.add(value);
  secretPattern = null;
}

function secretsRegExp(): RegExp | null {
  if (secretValues.size === 0) return null;
  if (!secretPattern) {
    // both forms: as given, and as JSON escapes it inside a string
    const forms = new Set<string>();
    for (const v of secretValues) {
      forms.add(v);
      forms.add(JSON.stringify(v).slice(1, -1));
    }
    const sorted = [...forms].sort((a, b) => b.length - a.length).map(escapeRegExp);
    secretPattern = new RegExp(sorted.join('|'), 'g');
  }
  return secretPattern;
}

/** `line` with every secret value, token and signature replaced. */
export function scrubLine(line: string): string {
  let out = line;
  for (const [re, by] of PATTERNS) out = out.replace(re, by);
  const secrets = secretsRegExp();
  if (secrets) out = out.replace(secrets, REDACTED);
  return out;
}
