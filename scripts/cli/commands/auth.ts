// register / login: get a token for an email and password and save it (0600) with the API URL.
// logout: revoke the token and forget it.
import { credentialsPath, removeCredentials, saveCredentials } from '../credentials.ts';
import { ApiError } from '../errors.ts';
import { ask, askSecret, closePrompts } from '../prompt.ts';
import { stringFlag, type Command, type CommandContext } from './command.ts';

const options = {
  email: { type: 'string', value: 'email', description: 'account email (prompted for when missing)' },
  password: {
    type: 'string',
    value: 'password',
    description: 'password (prompted for without echo when missing; read from stdin when it is not a terminal)',
  },
} as const;

async function authenticate(ctx: CommandContext, mode: 'register' | 'login'): Promise<number> {
  const { url } = ctx.connection();
  let email: string;
  let password: string;
  try {
    email = stringFlag(ctx.flags, 'email') ?? (await ask('email: ', '--email'));
    password = stringFlag(ctx.flags, 'password') ?? (await askSecret('password: ', '--password'));
  } finally {
    closePrompts();
  }
  const api = ctx.api();
  const session = mode === 'register' ? await api.register(email, password) : await api.login(email, password);
  const file = saveCredentials({ url, token: session.token, email, userId: session.userId, savedAt: new Date().toISOString() }, ctx.env);
  if (ctx.env.CONTAINERPUB_TOKEN) ctx.out.error('note: CONTAINERPUB_TOKEN is set and overrides the saved token');
  ctx.out.info(`✔ ${mode === 'register' ? 'registered and logged in' : 'logged in'} as ${email} at ${url}`);
  ctx.out.info(`  token saved to ${file}`);
  ctx.out.data({ userId: session.userId, email, url, credentialsPath: file });
  return 0;
}

export const register: Command = {
  name: 'register',
  summary: 'create an account and log in',
  usage: 'register [--email <email>] [--password <password>]',
  examples: [
    "register --email ada@example.com",
    "register --email ada@example.com --password \"$PASSWORD\" || containerpub login --email ada@example.com --password \"$PASSWORD\"",
  ],
  details: `Creates an account on the API and saves its token to ${'$XDG_CONFIG_HOME'}/containerpub/credentials.json (else ~/.config/…), mode 0600.`,
  options,
  positionals: { names: [], min: 0 },
  run: (ctx) => authenticate(ctx, 'register'),
};

export const login: Command = {
  name: 'login',
  summary: 'log in and save the token',
  usage: 'login [--email <email>] [--password <password>]',
  examples: [
    "login --email ada@example.com",
    "login --url https://containerpub.example.com --email ada@example.com --json",
  ],
  details: `Saves the token to the credentials file (now ${credentialsPath()}), mode 0600.\nCONTAINERPUB_URL and CONTAINERPUB_TOKEN override what is saved.`,
  options,
  positionals: { names: [], min: 0 },
  run: (ctx) => authenticate(ctx, 'login'),
};

export const logout: Command = {
  name: 'logout',
  summary: 'revoke the token and remove the saved login',
  usage: 'logout',
  examples: [
    "logout",
    "logout --json",
  ],
  details:
    'Revokes the token on the API (API processes stop accepting it within 5 seconds) and deletes the saved\n' +
    'credentials file. A token from CONTAINERPUB_TOKEN is revoked too; unset the variable yourself.',
  options: {},
  positionals: { names: [], min: 0 },
  async run(ctx) {
    const { url, token, tokenSource } = ctx.connection();
    if (!token) {
      ctx.out.data({ loggedOut: false, url });
      ctx.out.info('not logged in: nothing to do');
      return 0;
    }
    let revoked = true;
    try {
      await ctx.api().logout();
    } catch (err) {
      // Already expired or revoked: there is nothing left to revoke, only the local copy to forget.
      if (!(err instanceof ApiError && err.status === 401)) throw err;
      revoked = false;
    }
    const removed = tokenSource === 'file' ? removeCredentials(ctx.env) : false;
    ctx.out.data({ loggedOut: true, url, revoked, credentialsRemoved: removed });
    ctx.out.info(revoked ? `✔ logged out of ${url}: the token is revoked` : `✔ logged out of ${url} (the token no longer worked)`);
    if (removed) ctx.out.info(`  removed ${credentialsPath(ctx.env)}`);
    if (tokenSource === 'env') ctx.out.error('note: CONTAINERPUB_TOKEN is still set in your environment; unset it');
    return 0;
  },
};

export const whoami: Command = {
  name: 'whoami',
  summary: 'show the account the token belongs to',
  usage: 'whoami',
  examples: ['whoami', "whoami --json | jq -r .handle"],
  details: 'Asks the API (GET /api/auth/me), so it also checks that the token works: exit code 3 when it does not.',
  options: {},
  positionals: { names: [], min: 0 },
  async run(ctx) {
    const me = await ctx.api().me();
    const { url, tokenSource } = ctx.connection();
    ctx.out.data(me);
    ctx.out.info(`${me.email} (handle ${me.handle}) at ${url}${tokenSource === 'env' ? ', token from CONTAINERPUB_TOKEN' : ''}`);
    return 0;
  },
};
