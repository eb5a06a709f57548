import { arg, type CommandSpec } from '../command.js';
import { path } from '../client.js';
import { DISPLAY_NAME, pickFlags, runList, runMutation, runShow } from './shared.js';

const lifecycle = (verb: 'suspend' | 'resume', done: string): CommandSpec => ({
  words: ['org', verb],
  summary: `${verb} an organization (recorded and billed; the mail data plane will enforce it)`,
  args: ['ID'],
  kind: 'api',
  run: (ctx) => runMutation(ctx, { method: 'POST', path: path`/organizations/${arg(ctx, 0)}/${verb}`, kind: 'organization', done }),
});

export const orgCommands: CommandSpec[] = [
  {
    words: ['org', 'create'],
    summary: 'create an organization under a reseller',
    args: ['NAME'],
    options: { reseller: { type: 'string', value: 'ID', required: true, help: 'reseller that owns it' }, ...DISPLAY_NAME },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: '/organizations', kind: 'organization', done: 'created organization',
        body: { resellerId: ctx.opts.str('reseller'), name: arg(ctx, 0), ...pickFlags(ctx, { 'display-name': 'displayName' }) },
      }),
  },
  {
    words: ['org', 'list'],
    summary: 'list organizations',
    options: { reseller: { type: 'string', value: 'ID', help: "only this reseller's" } },
    kind: 'list',
    run: (ctx) => runList(ctx, '/organizations', { reseller: ctx.opts.str('reseller') }, 'organization'),
  },
  {
    words: ['org', 'show'],
    summary: 'show one organization',
    args: ['ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/organizations/${arg(ctx, 0)}`, 'organization'),
  },
  {
    words: ['org', 'update'],
    summary: "change an organization's display name",
    args: ['ID'],
    options: { 'display-name': { ...DISPLAY_NAME['display-name'], required: true } },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PATCH', path: path`/organizations/${arg(ctx, 0)}`, kind: 'organization', done: 'updated organization',
        body: pickFlags(ctx, { 'display-name': 'displayName' }),
      }),
  },
  lifecycle('suspend', 'suspended organization'),
  lifecycle('resume', 'resumed organization'),
  {
    words: ['org', 'move'],
    summary: 'move an organization to another reseller',
    args: ['ID'],
    options: { reseller: { type: 'string', value: 'ID', required: true, help: 'the new reseller' } },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: path`/organizations/${arg(ctx, 0)}/move`, kind: 'organization', done: 'moved organization',
        body: { resellerId: ctx.opts.str('reseller') },
      }),
  },
  {
    words: ['org', 'delete'],
    summary: 'delete an organization',
    args: ['ID'],
    options: { force: { type: 'boolean', help: 'also delete its users, groups and domains' } },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}`, done: 'deleted organization', id: arg(ctx, 0),
        query: { force: ctx.opts.bool('force') || undefined },
      }),
  },
  {
    words: ['org', 'mail-events'],
    summary: 'list what the mail path reported about an organization (sending limits reached)',
    args: ['ID'],
    options: {
      mailbox: { type: 'string', value: 'ID', help: 'only events of this mailbox' },
      event: { type: 'string', value: 'NAME', help: 'only this event (sending_limit_reached)' },
    },
    kind: 'list',
    run: (ctx) => runList(ctx, path`/organizations/${arg(ctx, 0)}/mail-events`, { mailbox: ctx.opts.str('mailbox'), event: ctx.opts.str('event') }, 'mailEvent'),
  },
];
