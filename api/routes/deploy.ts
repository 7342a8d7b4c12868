// POST /api/functions/deploy — JSON (presigned upload) or multipart (archive through the API).
import { z } from 'zod';
import { num } from '../../shared/db/dialect.ts';
import { toIso } from '../../shared/db/time.ts';
import { FUNCTION_NAME_PATTERN } from '../../shared/domain/model.ts';
import { configPatchSchema, deployMetadataSchema } from '../../shared/domain/release-config.ts';
import { deployFromFile, requestPresignedDeploy, type DeployRequested } from '../../shared/domain/uploads.ts';
import { errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { receiveMultipartArchive } from '../http/multipart.ts';
import { jsonBody, parseWith } from '../http/validation.ts';

export const functionName = z
  .string()
  .regex(FUNCTION_NAME_PATTERN, 'must be 1-63 characters of a-z, 0-9 and "-", starting with a letter or digit');

// The upload URL is bound to the archive's size and sha256, so both are needed before it exists.
const NEEDS_DECLARATION = 'is required: the upload URL is bound to the archive\'s size (bytes) and sha256 (hex)';

export const deployJsonSchema = z.object({
  /** a change to the configuration the new version inherits from the latest one */
  config: configPatchSchema.optional(),
  metadata: deployMetadataSchema.optional(),
  /** false: build it, and wait for approval instead of going live */
  activate: z.boolean().optional(),
  name: functionName,
  // each check its own message: the type's error function would otherwise answer every one of them ("-1: must be a number")
  sizeBytes: z
    .number({ error: (i) => (i.input === undefined ? `sizeBytes ${NEEDS_DECLARATION}` : 'must be a number') })
    .int({ error: 'must be a whole number of bytes' })
    .positive({ error: 'must be greater than 0' }),
  sha256: z
    .string({ error: (i) => (i.input === undefined ? `sha256 ${NEEDS_DECLARATION}` : 'must be a string') })
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex characters'),
});

/** Multipart fields are text: `config` and `metadata` come as JSON in them. */
const jsonField = <S extends z.ZodType>(schema: S) =>
  z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be JSON' });
        return z.NEVER;
      }
    })
    .pipe(schema);
export const multipartFields = z.object({
  name: functionName,
  config: jsonField(configPatchSchema).optional(),
  metadata: jsonField(deployMetadataSchema).optional(),
  activate: z.enum(['true', 'false'], { error: 'must be "true" or "false"' }).transform((v) => v === 'true').optional(),
});

function deployedView(r: DeployRequested) {
  return {
    id: r.fn.id,
    name: r.fn.name,
    version: num(r.deployment.version),
    deploymentId: r.deployment.id,
    status: r.deployment.status,
    isNewFunction: r.isNewFunction,
    createdAt: toIso(r.deployment.created_at),
  };
}

export function register(app: App, p: Platform): void {
  app.post('/api/functions/deploy', async (c) => {
    const userId = c.get('userId');
    const type = (c.req.header('content-type') ?? '').toLowerCase();
    if (type.startsWith('multipart/form-data')) {
      const received = await receiveMultipartArchive(c, { maxBytes: p.config.uploads.maxArchiveBytes, dataDir: p.config.dataDir });
      try {
        const { name, config, metadata, activate } = parseWith(multipartFields, received.fields);
        if (!received.file) throw errors.badRequest('multipart deploy needs an "archive" file field');
        if (received.file.size === 0) throw errors.badRequest('archive is empty');
        const result = await deployFromFile(p, { userId, name, config, metadata, activate, ...received.file, filePath: received.file.path });
        return c.json(deployedView(result), 201);
      } finally {
        await received.cleanup();
      }
    }
    if (type !== '' && !type.startsWith('application/json')) {
      throw errors.unsupportedMediaType('send application/json (presigned upload) or multipart/form-data');
    }
    const body = await jsonBody(c, deployJsonSchema);
    const result = await requestPresignedDeploy(p, { userId, ...body }, { apiBaseUrl: new URL(c.req.url).origin });
    return c.json({ ...deployedView(result), upload: result.upload }, 201);
  });
}
