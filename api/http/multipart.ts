// Receives the seed's multipart deploy form (`name`, `archive`) by streaming the archive to a
// temporary file, hashing and counting as it goes: never the whole archive in memory, and an
// oversized one is refused at the first byte over the limit.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import busboy from 'busboy';
import type { Context } from 'hono';
import { errors } from '../../shared/errors.ts';
import { newUploadTempPath } from '../../shared/storage/upload-temp.ts';

export interface ReceivedArchive {
  fields: Record<string, string>;
  file: { path: string; size: number; sha256: string } | null;
  /** removes the temporary file; always call it */
  cleanup(): Promise<void>;
}

/** gzip's magic number: anything else is refused at once rather than failing later in the build */
const GZIP_MAGIC = [0x1f, 0x8b];

export async function receiveMultipartArchive(
  c: Context,
  opts: { maxBytes: number; dataDir: string },
): Promise<ReceivedArchive> {
  const { maxBytes } = opts;
  const declared = Number(c.req.header('content-length') ?? NaN);
  // Multipart framing adds a little around the file; anything far past the limit is refused unread.
  if (Number.isFinite(declared) && declared > maxBytes + 1024 * 1024) {
    throw errors.tooLarge(maxBytes);
  }
  const body = c.req.raw.body;
  if (!body) throw errors.badRequest('multipart body is empty');
  const tmpFile = newUploadTempPath(opts.dataDir);
  const fields: Record<string, string> = {};
  let file: ReceivedArchive['file'] = null;
  let tooLarge = false;
  let notGzip = false;
  let extraFile = false;

  const cleanup = () => fs.promises.rm(tmpFile, { force: true });
  let bb: busboy.Busboy;
  try {
    bb = busboy({
      headers: { 'content-type': c.req.header('content-type') ?? '' },
      limits: { files: 1, fields: 20, fieldSize: 64 * 1024, fileSize: maxBytes },
    });
  } catch (err) {
    throw errors.badRequest(`malformed multipart body: ${(err as Error).message}`);
  }

  const fileWrites: Promise<void>[] = [];
  bb.on('field', (name, value) => {
    fields[name] = value;
  });
  bb.on('file', (name, stream) => {
    if (name !== 'archive' || file !== null || fileWrites.length > 0) {
      extraFile = extraFile || name !== 'archive';
      stream.resume();
      return;
    }
    const hash = createHash('sha256');
    let size = 0;
    let head = Buffer.alloc(0);
    // Checks the magic number on the way to the file. After a mismatch the rest is read and
    // dropped rather than the stream destroyed: busboy would stall on a destroyed file stream, and
    // the client gets a clear 400 once its body is in.
    const gzipCheck = new Transform({
      transform(chunk: Buffer, _enc, done) {
        if (notGzip) return done();
        if (head.length < GZIP_MAGIC.length) {
          head = Buffer.concat([head, chunk.subarray(0, GZIP_MAGIC.length - head.length)]);
          if (GZIP_MAGIC.some((b, i) => i < head.length && head[i] !== b)) {
            notGzip = true;
            return done();
          }
        }
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    stream.on('limit', () => {
      tooLarge = true;
    });
    const written = pipeline(stream, gzipCheck, fs.createWriteStream(tmpFile)).then(() => {
      if (size > 0 && size < GZIP_MAGIC.length) notGzip = true;
      file = { path: tmpFile, size, sha256: hash.digest('hex') };
    });
    // Awaited below once the whole body is read; until then a refusal must not count as unhandled.
    written.catch(() => {});
    fileWrites.push(written);
  });

  try {
    await pipeline(Readable.fromWeb(body as unknown as WebReadableStream), bb);
    await Promise.all(fileWrites);
  } catch (err) {
    await cleanup();
    if (tooLarge) throw errors.tooLarge(maxBytes);
    if (notGzip) throw notGzipError();
    throw errors.badRequest(`malformed multipart body: ${(err as Error).message}`);
  }
  if (tooLarge) {
    await cleanup();
    throw errors.tooLarge(maxBytes);
  }
  if (notGzip) {
    await cleanup();
    throw notGzipError();
  }
  if (extraFile) {
    await cleanup();
    throw errors.badRequest('unexpected file field: send the archive as "archive"');
  }
  return { fields, file, cleanup };
}

const notGzipError = () =>
  errors.badRequest('archive is not gzip: send a .tar.gz (it must start with the bytes 1f 8b)');
