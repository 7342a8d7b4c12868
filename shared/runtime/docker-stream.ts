// The JSON-lines progress stream of a Docker build, push or pull. The engine reports a failed step
// (a COPY of a missing file, a refused push) as an `{error, errorDetail}` entry inside a stream that
// otherwise ends normally, and dockerode's followProgress passes such entries on as plain progress:
// the build "succeeds" at the API level. Every entry goes through the scanner, and any error fails.
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

export interface DockerEvent {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { message?: string; code?: number };
  aux?: { ID?: string; Tag?: string; Digest?: string; Size?: number };
  message?: string;
}

export interface DockerEventScan {
  /** the first error the engine reported, or null */
  error: string | null;
  /** the human-readable lines (build output, push/pull statuses), without progress-bar updates */
  lines: string[];
}

/** Reads docker events one by one: the lines to show, the first error, and the built image's id. */
export class DockerEventScanner {
  error: string | null = null;
  /** the built image id (`aux.ID`), when the stream carried one */
  imageId: string | null = null;
  /** the pushed digest (`aux.Digest`), when the stream carried one */
  digest: string | null = null;

  /** Takes one event and returns the lines it adds to the log. */
  push(event: unknown): string[] {
    if (event === null || typeof event !== 'object') return [];
    const ev = event as DockerEvent;
    const lines: string[] = [];
    const errorText =
      (typeof ev.errorDetail?.message === 'string' && ev.errorDetail.message) ||
      (typeof ev.error === 'string' && ev.error) ||
      (ev.errorDetail || ev.error !== undefined ? 'the engine reported an error without a message' : null);
    if (errorText) {
      const text = errorText.trim();
      this.error ??= text;
      lines.push(`ERROR: ${text}`);
      return lines;
    }
    if (typeof ev.stream === 'string') {
      for (const line of ev.stream.split(/\r?\n/)) {
        const l = line.trimEnd();
        if (l.trim() !== '') lines.push(l);
      }
    }
    if (typeof ev.status === 'string') {
      // progress-bar updates ("Pushing [==>  ] 12MB/100MB") would flood the log
      const isProgress = ev.progressDetail !== undefined && typeof ev.progressDetail.current === 'number';
      if (!isProgress) lines.push(ev.id ? `${ev.id}: ${ev.status}` : ev.status);
    }
    if (ev.aux && typeof ev.aux === 'object') {
      if (typeof ev.aux.ID === 'string') this.imageId = ev.aux.ID;
      if (typeof ev.aux.Digest === 'string') this.digest = ev.aux.Digest;
    }
    return lines;
  }
}

/** Scans a recorded array of events (what followProgress collects). */
export function scanDockerEvents(events: any[]): DockerEventScan {
  const scanner = new DockerEventScanner();
  const lines: string[] = [];
  for (const ev of events) lines.push(...scanner.push(ev));
  return { error: scanner.error, lines };
}

export interface FollowResult extends DockerEventScan {
  imageId: string | null;
  digest: string | null;
}

/**
 * Follows a live progress stream to its end, handing each line to `onLine`. Resolves with the scan
 * (the caller decides what an error means); rejects when the stream itself breaks or `signal`
 * aborts (the stream is destroyed, which makes the engine cancel the build).
 * Unlike followProgress, a line that is not JSON does not throw out of an event handler: it is
 * kept as a plain output line.
 */
export function followDockerStream(
  stream: Readable,
  opts: { onLine?: (line: string) => void; signal?: AbortSignal } = {},
): Promise<FollowResult> {
  return new Promise((resolve, reject) => {
    const scanner = new DockerEventScanner();
    const lines: string[] = [];
    const decoder = new StringDecoder('utf8');
    let buf = '';
    let settled = false;

    const emit = (produced: string[]) => {
      for (const line of produced) {
        lines.push(line);
        opts.onLine?.(line);
      }
    };
    const handleLine = (raw: string) => {
      const line = raw.trim();
      if (line === '') return;
      let event: unknown;
      try {
        event = JSON.parse(line);
      } catch {
        emit([line]);
        return;
      }
      emit(scanner.push(event));
    };
    const cleanup = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      stream.off('error', onError);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (err) reject(err);
      else resolve({ error: scanner.error, lines, imageId: scanner.imageId, digest: scanner.digest });
    };
    function onData(chunk: Buffer | string) {
      buf += typeof chunk === 'string' ? chunk : decoder.write(chunk);
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        handleLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    function onEnd() {
      buf += decoder.end();
      if (buf) handleLine(buf);
      buf = '';
      finish(null);
    }
    function onClose() {
      // 'end' comes first on a complete stream; a bare close is a connection cut mid-way
      finish(new Error('the engine closed the progress stream before its end'));
    }
    function onError(err: Error) {
      finish(err);
    }
    function onAbort() {
      stream.destroy();
      const reason = opts.signal?.reason;
      finish(reason instanceof Error ? reason : new Error('aborted'));
    }

    if (opts.signal?.aborted) {
      onAbort();
      return;
    }
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onClose);
    stream.on('error', onError);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
