import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeInScope, roleCovers, ROLES, type Principal } from './tenancy.js';

test('role coverage is a partial order: higher and stronger only', () => {
  assert.ok(roleCovers('provider_admin', 'user'));
  assert.ok(roleCovers('reseller_admin', 'organization_admin'));
  assert.ok(roleCovers('reseller_helpdesk', 'organization_helpdesk'));
  assert.ok(!roleCovers('reseller_helpdesk', 'organization_admin'), 'helpdesk never grants admin');
  assert.ok(!roleCovers('organization_admin', 'reseller_helpdesk'), 'never upward');
  assert.ok(!roleCovers('provider_helpdesk', 'organization_admin'));
  for (const r of ROLES) assert.ok(roleCovers(r, r));
});

test('scope: a node is visible only at or below the principal', () => {
  const p = (role: Principal['role'], resellerId: string | null, orgId: string | null, userId: string | null = null): Principal =>
    ({ tokenId: 't', role, resellerId, orgId, userId, actor: 't' });
  const node = { resellerId: 'r1', orgId: 'o1', userId: 'u1' };
  assert.ok(nodeInScope(p('provider_helpdesk', null, null), node));
  assert.ok(nodeInScope(p('reseller_admin', 'r1', null), node));
  assert.ok(!nodeInScope(p('reseller_admin', 'r2', null), node));
  assert.ok(nodeInScope(p('organization_helpdesk', 'r1', 'o1'), node));
  assert.ok(!nodeInScope(p('organization_admin', 'r1', 'o2'), node));
  assert.ok(nodeInScope(p('user', 'r1', 'o1', 'u1'), node));
  assert.ok(!nodeInScope(p('user', 'r1', 'o1', 'u2'), node));
  assert.ok(!nodeInScope(p('reseller_admin', 'r1', null), { resellerId: null, orgId: null }));
});
