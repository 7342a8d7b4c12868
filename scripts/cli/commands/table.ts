// Every command of `containerpub`, in the order --help lists them, and the options every command
// takes. main.ts dispatches through it; `completion` and the tests read it too.
import { DEFAULT_URL } from '../credentials.ts';
import { access } from './access.ts';
import { approve } from './approve.ts';
import { register, login, logout, whoami } from './auth.ts';
import { canary } from './canary.ts';
import type { Command, OptionSpec } from './command.ts';
import { completionCommand } from './completion.ts';
import { config, diff, env, secrets } from './config.ts';
import { deleteCommand } from './delete.ts';
import { deploy } from './deploy.ts';
import { history } from './history.ts';
import { instances } from './instances.ts';
import { invoke } from './invoke.ts';
import { keys } from './keys.ts';
import { logs } from './logs.ts';
import { metrics } from './metrics.ts';
import { ls } from './ls.ts';
import { open } from './open.ts';
import { rollback } from './rollback.ts';
import { status } from './status.ts';
import { tag, tags } from './tag.ts';
import { tokens } from './tokens.ts';
import { promote, traffic } from './traffic.ts';
import { url } from './url.ts';
import { watchCommand } from './watch.ts';

export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  url: { type: 'string', value: 'url', description: `API URL (default: $CONTAINERPUB_URL, the saved login, or ${DEFAULT_URL})` },
  json: { type: 'boolean', description: "print the API's JSON on stdout, one document (messages go to stderr)" },
  help: { type: 'boolean', short: 'h', description: 'show help' },
};

export const COMMANDS: Command[] = [
  register,
  login,
  whoami,
  deploy,
  watchCommand,
  ls,
  history,
  rollback,
  canary,
  traffic,
  promote,
  tag,
  tags,
  approve,
  diff,
  env,
  secrets,
  config,
  invoke,
  url,
  open,
  access,
  keys,
  logs,
  metrics,
  instances,
  deleteCommand,
  status,
  tokens,
  logout,
];
COMMANDS.push(completionCommand(() => ({ commands: COMMANDS, globalOptions: GLOBAL_OPTIONS })));
