// `containerpub config <name> memory=256 timeout=5s min=1 …`: KEY=VALUE words into a config patch.
// Units are for people (memory in MiB or with M/G, durations with ms/s/m); the API checks ranges.
// `KEY=default` (or `KEY=`) removes the setting, so the platform default applies again.
import { UsageError } from './errors.ts';

export interface LimitsPatch {
  memoryMb?: number | null;
  timeoutMs?: number | null;
  minInstances?: number | null;
  maxInstances?: number | null;
  concurrency?: number | null;
  network?: 'none' | 'outbound' | null;
}

type Key = keyof LimitsPatch;

const ALIASES: Record<string, Key> = {
  memory: 'memoryMb',
  mem: 'memoryMb',
  memorymb: 'memoryMb',
  timeout: 'timeoutMs',
  timeoutms: 'timeoutMs',
  min: 'minInstances',
  mininstances: 'minInstances',
  max: 'maxInstances',
  maxinstances: 'maxInstances',
  concurrency: 'concurrency',
  network: 'network',
};

export const CONFIG_KEYS_HELP =
  'memory=<MiB|256M|1G>  timeout=<ms|500ms|5s|2m>  min=<n>  max=<n>  concurrency=<n>  network=none|outbound  (KEY=default removes it)';

function bad(word: string, why: string): UsageError {
  return new UsageError(`${word}: ${why}`);
}

function integer(word: string, text: string): number {
  if (!/^[0-9]{1,9}$/.test(text)) throw bad(word, 'must be a whole number');
  return Number(text);
}

function memoryMb(word: string, text: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*(m|mb|mi|mib|g|gb|gi|gib)?$/i.exec(text);
  if (!m) throw bad(word, 'must be MiB, e.g. 256, 256M or 1G');
  const value = Number(m[1]) * (m[2] && /^g/i.test(m[2]) ? 1024 : 1);
  if (!Number.isInteger(value)) throw bad(word, 'must be a whole number of MiB');
  return value;
}

function durationMs(word: string, text: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|min)?$/i.exec(text);
  if (!m) throw bad(word, 'must be a duration, e.g. 500ms, 5s or 2m (a bare number is milliseconds)');
  const unit = (m[2] ?? 'ms').toLowerCase();
  const value = Number(m[1]) * (unit === 'ms' ? 1 : unit === 's' ? 1000 : 60_000);
  if (!Number.isInteger(value)) throw bad(word, 'must be a whole number of milliseconds');
  return value;
}

/** KEY=VALUE words into a patch; a UsageError naming the word for anything it cannot read. */
export function parseConfigArgs(words: string[]): LimitsPatch {
  const patch: LimitsPatch = {};
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq <= 0) throw new UsageError(`"${word}" is not KEY=VALUE (${CONFIG_KEYS_HELP})`);
    const rawKey = word.slice(0, eq);
    const key = ALIASES[rawKey.toLowerCase()];
    if (!key) throw new UsageError(`unknown setting "${rawKey}" (${CONFIG_KEYS_HELP})`);
    if (key in patch) throw new UsageError(`${rawKey} is given twice`);
    const text = word.slice(eq + 1).trim();
    if (text === '' || text.toLowerCase() === 'default') {
      patch[key] = null;
      continue;
    }
    switch (key) {
      case 'memoryMb':
        patch.memoryMb = memoryMb(word, text);
        break;
      case 'timeoutMs':
        patch.timeoutMs = durationMs(word, text);
        break;
      case 'network':
        if (text !== 'none' && text !== 'outbound') throw bad(word, 'must be none or outbound');
        patch.network = text;
        break;
      default:
        patch[key] = integer(word, text);
    }
  }
  return patch;
}

/** "5 s", "500 ms", "2 min" */
export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000} min`;
  if (ms % 1000 === 0 && ms >= 1000) return `${ms / 1000} s`;
  return `${ms} ms`;
}
