import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertSlug, displayDomain, normalizeAddress, normalizeDomain } from './names.js';
import { HmcError } from './errors.js';

test('domains are stored in A-label form, IDN accepted', () => {
  assert.equal(normalizeDomain('Example.COM'), 'example.com');
  assert.equal(normalizeDomain('bücher.example.'), 'xn--bcher-kva.example');
  assert.equal(displayDomain('xn--bcher-kva.example'), 'bücher.example');
  for (const bad of ['', 'localhost', 'a..b', '-a.com', 'a-.com', 'a b.com', 'x.123', 'a@b.com', 'a'.repeat(64) + '.com', 'xn--zz.com']) {
    assert.throws(() => normalizeDomain(bad), (e: unknown) => e instanceof HmcError && e.code === 'invalid_domain', bad);
  }
});

test('addresses are normalised to one spelling', () => {
  assert.deepEqual(normalizeAddress(' Jane.Doe@Bücher.Example '), {
    address: 'jane.doe@xn--bcher-kva.example', local: 'jane.doe', domain: 'xn--bcher-kva.example',
  });
  for (const bad of ['jane', '@x.com', 'jane@', 'a..b@x.com', '.a@x.com', 'jänе@x.com', 'a b@x.com', `${'a'.repeat(65)}@x.com`]) {
    assert.throws(() => normalizeAddress(bad), (e: unknown) => e instanceof HmcError && e.code === 'invalid_address', bad);
  }
});

test('slugs', () => {
  assert.equal(assertSlug('acme-1', 'x'), 'acme-1');
  for (const bad of ['', 'Acme', '-a', 'a-', 'a'.repeat(65), 'a/b']) assert.throws(() => assertSlug(bad, 'x'));
});
