// register / login: get a token for an email and password and save it (0600) with the API URL.
import { credentialsPath, saveCredentials } from '../credentials.ts';
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
  details: `Creates an account on the API and saves its token to ${'$XDG_CONFIG_HOME'}/containerpub/credentials.json (else ~/.config/…), mode 0600.`,
  options,
  positionals: { names: [], min: 0 },
  run: (ctx) => authenticate(ctx, 'register'),
};

export const login: Command = {
  name: 'login',
  summary: 'log in and save the token',
  usage: 'login [--email <email>] [--password <password>]',
  details: `Saves the token to the credentials file (now ${credentialsPath()}), mode 0600.\nCONTAINERPUB_URL and CONTAINERPUB_TOKEN override what is saved.`,
  options,
  positionals: { names: [], min: 0 },
  run: (ctx) => authenticate(ctx, 'login'),
};
