// tag <name> <tag> <version> | tag <name> <tag> --delete, tags <name>: names that point at one
// version and serve it (/fn/{handle}/{name}@{tag}/…, invoke --tag).
import { tagNameProblem } from '../../../shared/domain/tag-name.ts';
import { UsageError } from '../errors.ts';
import { formatAge, table } from '../format.ts';
import { versionArg, type Command } from './command.ts';

/** Checked here with the API's own rule (shared/domain/tag-name.ts), so a bad tag costs no request. */
function tagArg(raw: string): string {
  const problem = tagNameProblem(raw);
  if (problem) throw new UsageError(`invalid tag "${raw}": ${problem}`);
  return raw;
}

export const tag: Command = {
  name: 'tag',
  summary: 'point a tag at a version, or delete a tag',
  usage: 'tag <name> <tag> <version> | tag <name> <tag> --delete',
  examples: [
    "tag hello stable 3",
    "tag hello stable --delete",
  ],
  details:
    'A tag (1-31 of a-z, 0-9 and "-", starting with a letter) names one built version: it is served at\n' +
    '/fn/{handle}/{name}@{tag}/… and by POST …/invoke?tag=…, with the function\'s access rules.\n' +
    'Setting a tag again moves it (the next request sees the move). A tagged version is never archived by retention.',
  options: {
    delete: { type: 'boolean', description: 'remove the tag' },
  },
  positionals: { names: ['name', 'tag', 'version'], min: 2 },
  async run(ctx) {
    const [name, rawTag, rawVersion] = ctx.positionals;
    const t = tagArg(rawTag!);
    const remove = ctx.flags.delete === true;
    if (remove && rawVersion !== undefined) throw new UsageError('tag --delete takes no version');
    if (!remove && rawVersion === undefined) throw new UsageError('tag needs <version> (or --delete)');
    const version = remove ? null : versionArg(rawVersion!);
    const api = ctx.api();
    const fn = await api.functionNamed(name!);
    if (version === null) {
      await api.deleteTag(fn.id, t);
      ctx.out.data({ name, tag: t, deleted: true });
      ctx.out.info(`✔ ${name}@${t} deleted`);
      return 0;
    }
    const result = await api.setTag(fn.id, t, version);
    ctx.out.data({ name, ...result });
    ctx.out.info(`✔ ${name}@${t} → v${result.version}`);
    return 0;
  },
};

export const tags: Command = {
  name: 'tags',
  summary: "list a function's tags",
  usage: 'tags <name>',
  examples: [
    "tags hello",
    "tags hello --json",
  ],
  options: {},
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const api = ctx.api();
    const fn = await api.functionNamed(name!);
    const list = await api.listTags(fn.id);
    ctx.out.data({ name, tags: list });
    if (ctx.out.json) return 0;
    if (list.length === 0) {
      ctx.out.info(`${name} has no tags (set one with "containerpub tag ${name} <tag> <version>")`);
      return 0;
    }
    ctx.out.info(table(['TAG', 'VERSION', 'UPDATED'], list.map((t) => [t.tag, `v${t.version}`, formatAge(t.updatedAt)])));
    return 0;
  },
};
