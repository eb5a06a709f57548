import { arg, type CommandSpec } from '../command.js';
import { path } from '../client.js';
import { UsageError } from '../errors.js';
import { DISPLAY_NAME, pickFlags, runList, runMutation, runShow } from './shared.js';

export const groupCommands: CommandSpec[] = [
  {
    words: ['group', 'create'],
    summary: 'create a group in an organization',
    args: ['ORG_ID', 'NAME'],
    options: {
      ...DISPLAY_NAME,
      description: { type: 'string', value: 'X', help: 'what the group is for' },
      member: { type: 'string', value: 'USER_ID', multiple: true, help: 'initial member' },
    },
    kind: 'api',
    run: (ctx) => {
      const members = ctx.opts.list('member');
      return runMutation(ctx, {
        method: 'POST', path: path`/organizations/${arg(ctx, 0)}/groups`, kind: 'group', done: 'created group',
        body: {
          name: arg(ctx, 1),
          ...pickFlags(ctx, { 'display-name': 'displayName', description: 'description' }),
          ...(members.length > 0 ? { members } : {}),
        },
      });
    },
  },
  {
    words: ['group', 'list'],
    summary: "list an organization's groups",
    args: ['ORG_ID'],
    kind: 'list',
    run: (ctx) => runList(ctx, path`/organizations/${arg(ctx, 0)}/groups`, {}, 'group'),
  },
  {
    words: ['group', 'show'],
    summary: 'show one group',
    args: ['ORG_ID', 'GROUP_ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/organizations/${arg(ctx, 0)}/groups/${arg(ctx, 1)}`, 'group'),
  },
  {
    words: ['group', 'update'],
    summary: "change a group's display name or description",
    args: ['ORG_ID', 'GROUP_ID'],
    options: { ...DISPLAY_NAME, description: { type: 'string', value: 'X', help: 'what the group is for ("" clears it)' } },
    kind: 'api',
    run: (ctx) => {
      const body: Record<string, unknown> = pickFlags(ctx, { 'display-name': 'displayName', description: 'description' });
      if (body.description === '') body.description = null;
      if (Object.keys(body).length === 0) throw new UsageError('nothing to update: give --display-name or --description');
      return runMutation(ctx, {
        method: 'PATCH', path: path`/organizations/${arg(ctx, 0)}/groups/${arg(ctx, 1)}`, kind: 'group', done: 'updated group', body,
      });
    },
  },
  {
    words: ['group', 'members'],
    summary: "list a group's members",
    args: ['ORG_ID', 'GROUP_ID'],
    kind: 'list',
    run: (ctx) => runList(ctx, path`/organizations/${arg(ctx, 0)}/groups/${arg(ctx, 1)}/members`, {}, 'member'),
  },
  {
    words: ['group', 'delete'],
    summary: 'delete a group (its members stay)',
    args: ['ORG_ID', 'GROUP_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/groups/${arg(ctx, 1)}`, done: 'deleted group', id: arg(ctx, 1),
      }),
  },
  {
    words: ['group', 'add-member'],
    summary: 'add a user to a group',
    args: ['ORG_ID', 'GROUP_ID', 'USER_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PUT', path: path`/organizations/${arg(ctx, 0)}/groups/${arg(ctx, 1)}/members/${arg(ctx, 2)}`,
        done: `added ${arg(ctx, 2)} to group`, id: arg(ctx, 1),
      }),
  },
  {
    words: ['group', 'remove-member'],
    summary: 'remove a user from a group',
    args: ['ORG_ID', 'GROUP_ID', 'USER_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/groups/${arg(ctx, 1)}/members/${arg(ctx, 2)}`,
        done: `removed ${arg(ctx, 2)} from group`, id: arg(ctx, 1),
      }),
  },
];
