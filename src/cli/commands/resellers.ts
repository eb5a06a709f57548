import { arg, type CommandSpec } from '../command.js';
import { path } from '../client.js';
import { DISPLAY_NAME, pickFlags, runList, runMutation, runShow } from './shared.js';

const lifecycle = (verb: 'suspend' | 'resume', done: string): CommandSpec => ({
  words: ['reseller', verb],
  summary: `${verb} a reseller (recorded and billed; its organizations keep their own state)`,
  args: ['ID'],
  kind: 'api',
  run: (ctx) => runMutation(ctx, { method: 'POST', path: path`/resellers/${arg(ctx, 0)}/${verb}`, kind: 'reseller', done }),
});

export const resellerCommands: CommandSpec[] = [
  {
    words: ['reseller', 'create'],
    summary: 'create a reseller',
    args: ['NAME'],
    options: DISPLAY_NAME,
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: '/resellers', kind: 'reseller', done: 'created reseller',
        body: { name: arg(ctx, 0), ...pickFlags(ctx, { 'display-name': 'displayName' }) },
      }),
  },
  {
    words: ['reseller', 'list'],
    summary: 'list resellers',
    kind: 'list',
    run: (ctx) => runList(ctx, '/resellers', {}, 'reseller'),
  },
  {
    words: ['reseller', 'show'],
    summary: 'show one reseller',
    args: ['ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/resellers/${arg(ctx, 0)}`, 'reseller'),
  },
  {
    words: ['reseller', 'update'],
    summary: "change a reseller's display name",
    args: ['ID'],
    options: { 'display-name': { ...DISPLAY_NAME['display-name'], required: true } },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PATCH', path: path`/resellers/${arg(ctx, 0)}`, kind: 'reseller', done: 'updated reseller',
        body: pickFlags(ctx, { 'display-name': 'displayName' }),
      }),
  },
  lifecycle('suspend', 'suspended reseller'),
  lifecycle('resume', 'resumed reseller'),
  {
    words: ['reseller', 'delete'],
    summary: 'delete a reseller (it must have no organizations)',
    args: ['ID'],
    kind: 'api',
    run: (ctx) => runMutation(ctx, { method: 'DELETE', path: path`/resellers/${arg(ctx, 0)}`, done: 'deleted reseller', id: arg(ctx, 0) }),
  },
];
