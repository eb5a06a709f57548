import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SMTPServerSession } from 'smtp-server';
import { dsnGroups } from './agent.js';

/** How the agent hands a message's recipients back to Postfix with their DSN parameters (RFC 3461). */

type Rcpt = { address: string; dsn?: { notify?: string[]; orcpt?: string } };
const envelope = (rcpts: Rcpt[], dsn?: { ret: string | null; envid: string | null }) =>
  ({ mailFrom: { address: 'a@x.example', args: false }, rcptTo: rcpts.map((r) => ({ args: false, ...r })), ...(dsn ? { dsn } : {}) }) as unknown as SMTPServerSession['envelope'];

test('no DSN parameters: one transaction, none sent', () => {
  assert.deepEqual(dsnGroups(envelope([{ address: 'b@x.example' }, { address: 'c@x.example' }], { ret: null, envid: null })), [{ to: ['b@x.example', 'c@x.example'] }]);
  assert.deepEqual(dsnGroups(envelope([{ address: 'b@x.example' }])), [{ to: ['b@x.example'] }]);
});

test('RET and ENVID go with every group; recipients that asked alike share one transaction', () => {
  const groups = dsnGroups(envelope([
    { address: 'b@x.example', dsn: { notify: ['SUCCESS', 'FAILURE'] } },
    { address: 'c@x.example', dsn: { notify: ['SUCCESS', 'FAILURE'] } },
    { address: 'd@x.example', dsn: { notify: ['NEVER'] } },
    { address: 'e@x.example' },
  ], { ret: 'HDRS', envid: 'id+1=2' }));
  assert.deepEqual(groups, [
    { to: ['b@x.example', 'c@x.example'], dsn: { ret: 'HDRS', envid: 'id+1=2', notify: 'SUCCESS,FAILURE', orcpt: null } },
    { to: ['d@x.example'], dsn: { ret: 'HDRS', envid: 'id+1=2', notify: 'NEVER', orcpt: null } },
    { to: ['e@x.example'], dsn: { ret: 'HDRS', envid: 'id+1=2', notify: null, orcpt: null } },
  ]);
});

test('an ORCPT naming the recipient itself is left out; another one is kept (its own transaction)', () => {
  const groups = dsnGroups(envelope([
    { address: 'b@x.example', dsn: { notify: ['SUCCESS'], orcpt: 'rfc822;B@x.example' } },
    { address: 'c@x.example', dsn: { notify: ['SUCCESS'] } },
    { address: 'd@x.example', dsn: { notify: ['SUCCESS'], orcpt: 'rfc822;list@x.example' } },
  ]));
  assert.deepEqual(groups.map((g) => [g.to, g.dsn?.orcpt]), [[['b@x.example', 'c@x.example'], null], [['d@x.example'], 'rfc822;list@x.example']]);
});

test('without NOTIFY the ORCPT Postfix adds for rewritten recipients is left out: ordinary mail to a group stays one transaction', () => {
  const groups = dsnGroups(envelope([
    { address: 'b@x.example', dsn: { orcpt: 'rfc822;team@x.example' } },
    { address: 'c@x.example', dsn: { orcpt: 'rfc822;team@x.example' } },
    { address: 'd@x.example', dsn: { orcpt: 'rfc822;forwarder@x.example' } },
    { address: 'e@x.example' },
  ]));
  assert.deepEqual(groups, [{ to: ['b@x.example', 'c@x.example', 'd@x.example', 'e@x.example'] }]);
});
