// keys create <name> [--key-name <n>] | keys ls <name> | keys rm <name> <keyId>: a function's keys,
// the credentials callers present when its access is "key". A created key is printed once, alone
// on stdout (the platform keeps only its hash); the list never shows secrets.
import { UsageError } from '../errors.ts';
import { formatAge, table } from '../format.ts';
import { stringFlag, type Command } from './command.ts';

const ACTIONS = ['create', 'ls', 'rm'] as const;
const DEFAULT_KEY_NAME = 'default';

export const keys: Command = {
  name: 'keys',
  summary: "create, list or revoke a function's keys",
  usage: 'keys create <name> [--key-name <n>] | keys ls <name> | keys rm <name> <keyId>',
  examples: [
    "keys create hello --key-name ci",
    "keys ls hello --json",
    "keys rm hello 5f0c…",
  ],
  details:
    'A function key lets a caller use the endpoint of a function whose access is "key"\n' +
    '(see "containerpub access"): send it as X-Function-Key: fk_… or Authorization: Bearer fk_….\n' +
    'create prints the new key once, alone on stdout; it cannot be shown again.\n' +
    'rm revokes a key; the endpoint refuses it within 5 seconds.',
  options: {
    'key-name': { type: 'string', value: 'n', description: `create: what the key is for (default "${DEFAULT_KEY_NAME}")` },
  },
  positionals: { names: ['create|ls|rm', 'name', 'keyId'], min: 2 },
  async run(ctx) {
    const [action, name, keyId] = ctx.positionals;
    if (!(ACTIONS as readonly string[]).includes(action)) throw new UsageError(`unknown keys action "${action}" (create, ls or rm)`);
    if (action !== 'rm' && keyId !== undefined) throw new UsageError(`unexpected argument "${keyId}"`);
    if (action === 'rm' && keyId === undefined) throw new UsageError(`keys rm needs <keyId>, which "containerpub keys ls ${name}" lists`);
    if (action !== 'create' && ctx.flags['key-name'] !== undefined) throw new UsageError('--key-name goes with keys create');
    const keyName = stringFlag(ctx.flags, 'key-name') ?? DEFAULT_KEY_NAME;
    if (keyName.trim() === '') throw new UsageError('--key-name must not be empty');

    const api = ctx.api();
    const fn = await api.functionNamed(name);
    if (action === 'ls') {
      const list = await api.listFunctionKeys(fn.id);
      ctx.out.data({ keys: list });
      if (ctx.out.json) return 0;
      if (list.length === 0) {
        ctx.out.info(`no keys for ${name}: create one with "containerpub keys create ${name}"`);
        return 0;
      }
      ctx.out.info(
        table(
          ['ID', 'NAME', 'CREATED', 'LAST USED'],
          list.map((k) => [k.id, k.name, formatAge(k.createdAt), k.lastUsedAt ? formatAge(k.lastUsedAt) : 'never']),
        ),
      );
      return 0;
    }
    if (action === 'create') {
      const issued = await api.createFunctionKey(fn.id, keyName);
      ctx.out.data(issued);
      if (ctx.out.json) return 0;
      ctx.out.error(`✔ key "${issued.name}" created for ${name} (id ${issued.id}); it is shown only this once and will not be shown again:`);
      process.stdout.write(`${issued.key}\n`);
      if (fn.access !== 'key') {
        const [now, change] =
          fn.access === 'public' ? ['anyone can call it, key or not', 'makes a key required'] : ['only your own token is accepted, not keys', 'lets keys in'];
        ctx.out.error(`note: ${name} is ${fn.access}: ${now}; "containerpub access ${name} key" ${change}`);
      }
      return 0;
    }
    await api.revokeFunctionKey(fn.id, keyId!);
    ctx.out.data({ revoked: keyId });
    ctx.out.info(`✔ key ${keyId} of ${name} revoked; the endpoint refuses it within 5 s`);
    return 0;
  },
};
