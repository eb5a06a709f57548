import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatSize, parseLimitSize, parseSize } from './sizes.js';
import { UsageError } from './errors.js';

test('sizes: plain bytes and binary units are exact up to 8PiB = 2^53', () => {
  assert.equal(parseSize('0'), 0);
  assert.equal(parseSize('1073741824'), 1024 ** 3);
  assert.equal(parseSize('50GiB'), 50 * 1024 ** 3);
  assert.equal(parseSize('2TiB'), 2 * 1024 ** 4);
  assert.equal(parseSize('16tib'), 16 * 1024 ** 4);
  assert.equal(parseSize('8PiB'), 2 ** 53);
  assert.equal(parseSize('512 MiB'), 512 * 1024 ** 2);
  assert.equal(parseSize('1.5GiB'), 1536 * 1024 ** 2);
  assert.equal(parseSize('0.5KiB'), 512);
  assert.equal(parseSize('7B'), 7);
  assert.equal(parseSize('9007199254740992'), 2 ** 53);
});

test('sizes: fractions of a byte, decimal units, negatives and more than 2^53 are refused', () => {
  for (const bad of ['0.1KiB', '1.5', '1.0000000001GiB', '-1', '1e9', 'GiB', '', '10GB', '10 gb', '3K', '8.0000001PiB', '9007199254740993', '9PiB', '1 2']) {
    assert.throws(() => parseSize(bad, '--storage'), UsageError, bad);
  }
  assert.throws(() => parseSize('10GB', '--storage'), /did you mean GiB/);
  assert.throws(() => parseSize('0.1KiB', '--storage'), /--storage: 0.1KiB is not a whole number of bytes/);
});

test('sizes: "unlimited" is null where a limit may be absent; formatting picks the exact unit', () => {
  assert.equal(parseLimitSize('unlimited'), null);
  assert.equal(parseLimitSize('2TiB'), 2 * 1024 ** 4);
  assert.equal(formatSize(50 * 1024 ** 3), '50GiB');
  assert.equal(formatSize(2 ** 53), '8PiB');
  assert.equal(formatSize(1536 * 1024 ** 2), '1536MiB');
  assert.equal(formatSize(1000), '1000');
});
