import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../main.js';
import { fakeIo } from '../fake-io.js';

test('org mail-events lists an organization\'s mail events with the sending limit in columns; filters go to the query', async () => {
  const item = { id: 'mev_1', orgId: 'org_1', at: '2030-01-01T10:00:00.000Z', event: 'sending_limit_reached', mailboxId: 'mbx_1', login: 'ann@x.example',
    data: { scope: 'mailbox', limit: 'messagesPerHour', max: 500, count: 500 } };
  const io = fakeIo({ api: () => ({ body: { items: [item], next: null } }) });
  assert.equal(await main(['org', 'mail-events', 'org_1', '--mailbox', 'mbx_1'], io), 0, io.errors());
  const call = io.calls[0]!;
  assert.equal(call.method, 'GET');
  assert.equal(call.url.pathname, '/api/v1/organizations/org_1/mail-events');
  assert.equal(call.url.searchParams.get('mailbox'), 'mbx_1');
  assert.equal(call.url.searchParams.get('event'), null);
  const [header, row] = io.output().split('\n');
  assert.match(header!, /^AT\s+EVENT\s+LOGIN\s+DATA SCOPE\s+DATA LIMIT\s+DATA MAX\s+MAILBOX ID$/);
  assert.match(row!, /sending_limit_reached\s+ann@x\.example\s+mailbox\s+messagesPerHour\s+500\s+mbx_1/);
});
