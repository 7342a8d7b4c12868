// POST /api/auth/register, POST /api/auth/login
import { z } from 'zod';
import { loginUser, registerUser } from '../../shared/domain/auth.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { jsonBody } from '../http/validation.ts';

export const registerSchema = z.object({
  email: z.email('must be an email address').max(320),
  password: z.string().min(8, 'must be at least 8 characters').max(1024),
});

export const loginSchema = z.object({
  email: z.string().min(1).max(320),
  password: z.string().min(1).max(1024),
});

export function register(app: App, p: Platform): void {
  app.post('/api/auth/register', async (c) => {
    const body = await jsonBody(c, registerSchema);
    const session = await registerUser(p.db, body.email, body.password);
    return c.json(session, 201);
  });
  app.post('/api/auth/login', async (c) => {
    const body = await jsonBody(c, loginSchema);
    const session = await loginUser(p.db, body.email, body.password);
    return c.json(session, 200);
  });
}
