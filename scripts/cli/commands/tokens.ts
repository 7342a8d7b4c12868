// tokens ls | tokens create --name <name> [--days <n>] | tokens rm <id>: the account's API tokens.
// A created token is printed once (it is what a CI job is given); the list never shows secrets.
import { UsageError } from '../errors.ts';
import { formatAge, formatTime, table } from '../format.ts';
import { intFlag, requiredFlag, type Command } from './command.ts';

const ACTIONS = ['ls', 'create', 'rm'] as const;

export const tokens: Command = {
  name: 'tokens',
  summary: 'list, create or revoke API tokens',
  usage: 'tokens ls | tokens create --name <name> [--days <n>] | tokens rm <id>',
  examples: [
    "tokens ls",
    "tokens create --name ci --days 90",
    "tokens rm 5f0c…",
  ],
  details:
    'create prints the new token once, on stdout: give it to a CI job as CONTAINERPUB_TOKEN.\n' +
    'rm revokes a token; API processes stop accepting it within 5 seconds.',
  options: {
    name: { type: 'string', value: 'name', description: 'create: what the token is for (required)' },
    days: { type: 'string', value: 'n', description: "create: days until it expires (default: the platform's TOKEN_TTL_DAYS)" },
  },
  positionals: { names: ['ls|create|rm', 'id'], min: 1 },
  async run(ctx) {
    const [action, id] = ctx.positionals;
    if (!(ACTIONS as readonly string[]).includes(action)) throw new UsageError(`unknown tokens action "${action}" (ls, create or rm)`);
    if (action !== 'rm' && id !== undefined) throw new UsageError(`unexpected argument "${id}"`);
    const api = ctx.api();
    if (action === 'ls') {
      const list = await api.listTokens();
      ctx.out.data({ tokens: list });
      if (ctx.out.json) return 0;
      ctx.out.info(
        table(
          ['ID', 'NAME', 'CREATED', 'LAST USED', 'EXPIRES'],
          list.map((t) => [t.id, t.name, formatAge(t.createdAt), t.lastUsedAt ? formatAge(t.lastUsedAt) : 'never', formatTime(t.expiresAt)]),
          { marks: list.map((t) => (t.current ? '*' : '')) },
        ),
      );
      ctx.out.info('* the token this CLI is using');
      return 0;
    }
    if (action === 'create') {
      const name = requiredFlag(ctx.flags, 'name', 'tokens create');
      const issued = await api.createToken(name, intFlag(ctx.flags, 'days', { max: 3650 }));
      ctx.out.data(issued);
      if (ctx.out.json) return 0;
      ctx.out.error(`✔ token "${issued.name}" created (id ${issued.id}), expires ${formatTime(issued.expiresAt)}; it is shown only this once:`);
      process.stdout.write(`${issued.token}\n`);
      return 0;
    }
    if (id === undefined) throw new UsageError('tokens rm needs <id> (see "containerpub tokens ls")');
    await api.revokeToken(id);
    ctx.out.data({ revoked: id });
    ctx.out.info(`✔ token ${id} revoked`);
    return 0;
  },
};
