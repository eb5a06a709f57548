import { arg, type CommandSpec } from '../command.js';
import { path } from '../client.js';
import { runList, runMutation } from './shared.js';

export const domainCommands: CommandSpec[] = [
  {
    words: ['domain', 'add'],
    summary: 'add a mail domain to an organization',
    args: ['ORG_ID', 'NAME'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: path`/organizations/${arg(ctx, 0)}/domains`, kind: 'domain', done: 'added domain',
        body: { name: arg(ctx, 1) },
      }),
  },
  {
    words: ['domain', 'list'],
    summary: "list an organization's domains",
    args: ['ORG_ID'],
    kind: 'list',
    run: (ctx) => runList(ctx, path`/organizations/${arg(ctx, 0)}/domains`, {}, 'domain'),
  },
  {
    words: ['domain', 'remove'],
    summary: 'remove a domain (no address may still use it)',
    args: ['ORG_ID', 'DOMAIN_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/domains/${arg(ctx, 1)}`, done: 'removed domain', id: arg(ctx, 1),
      }),
  },
];
