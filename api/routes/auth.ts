// POST /api/auth/register, POST /api/auth/login
import { z } from 'zod';
import { loginUser, newAccountSchema, registerUser } from '../../shared/domain/auth.ts';
import { errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { authAttemptLimit, type AuthAttemptLimit } from '../http/rate-limit.ts';
import { jsonBody } from '../http/validation.ts';

export const registerSchema = newAccountSchema;

export const loginSchema = z.object({
  email: z.string().min(1).max(320),
  password: z.string().min(1).max(1024),
});

/** `limit`: the attempts' buckets, shared with the dashboard's sign-in (POST /api/auth/session). */
export function register(app: App, p: Platform, limit: AuthAttemptLimit = authAttemptLimit(p.config.auth)): void {
  const session = { tokenTtlDays: p.config.auth.tokenTtlDays };
  app.post('/api/auth/register', async (c) => {
    if (p.config.auth.registration === 'closed') throw errors.registrationClosed();
    const body = await jsonBody(c, registerSchema);
    limit(c, body.email);
    return c.json(await registerUser(p.db, body, session), 201);
  });
  app.post('/api/auth/login', async (c) => {
    const body = await jsonBody(c, loginSchema);
    limit(c, body.email);
    return c.json(await loginUser(p.db, body.email, body.password, session), 200);
  });
}
