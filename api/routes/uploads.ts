// PUT /api/uploads/:deploymentId?expires=&sig= — the upload URL handed out while S3 is embedded.
// No bearer token: the signature in the URL is the credential (mounted outside requireUser).
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { z } from 'zod';
import { storeRelayedUpload } from '../../shared/domain/uploads.ts';
import { UUID_PATTERN } from '../../shared/domain/model.ts';
import { errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import { API_UPLOAD_PATH } from '../../shared/storage/upload-urls.ts';
import type { App } from '../http/app.ts';
import { parseWith } from '../http/validation.ts';

export const uploadQuery = z.object({
  expires: z.string().regex(/^[0-9]{1,12}$/, 'must be a Unix time in seconds').transform(Number),
  sig: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'must be the signature the API handed out'),
});

export function register(app: App, p: Platform): void {
  app.put(`${API_UPLOAD_PATH}/:deploymentId`, async (c) => {
    const deploymentId = c.req.param('deploymentId');
    if (!UUID_PATTERN.test(deploymentId)) throw errors.uploadUrlInvalid();
    const query = parseWith(uploadQuery, c.req.query());
    const header = c.req.header('content-length');
    const contentLength = header === undefined ? undefined : Number(header);
    if (contentLength !== undefined && !Number.isSafeInteger(contentLength)) throw errors.badRequest('bad Content-Length');
    const raw = c.req.raw.body;
    const body = raw ? Readable.fromWeb(raw as unknown as WebReadableStream) : Readable.from([]);
    const stored = await storeRelayedUpload(p, { deploymentId: deploymentId.toLowerCase(), ...query, contentLength, body });
    return c.json(stored, 200);
  });
}
