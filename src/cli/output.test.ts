import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatRecord, formatTable, formatValue, label, pickColumns, toJson } from './output.js';

test('cells: null is "-", booleans yes/no, scalar arrays joined, objects compact', () => {
  assert.equal(formatValue(null), '-');
  assert.equal(formatValue(undefined), '-');
  assert.equal(formatValue(''), '-');
  assert.equal(formatValue(true), 'yes');
  assert.equal(formatValue(0), '0');
  assert.equal(formatValue(['a', 'b']), 'a, b');
  assert.equal(formatValue({ a: 1 }), '{"a":1}');
  assert.equal(formatValue('two\nlines'), 'two lines');
});

test('labels read like headings', () => {
  assert.equal(label('displayName'), 'DISPLAY NAME');
  assert.equal(label('target.id'), 'TARGET ID');
});

test('tables align columns, keep the preferred order and skip absent columns', () => {
  const rows = [
    { id: 'rsl_1', name: 'acme', displayName: 'Acme Hosting', extra: 1 },
    { id: 'rsl_22', name: 'b', displayName: null, extra: 2 },
  ];
  assert.equal(
    formatTable(rows, ['id', 'name', 'state', 'displayName']),
    ['ID      NAME  DISPLAY NAME', 'rsl_1   acme  Acme Hosting', 'rsl_22  b     -', ''].join('\n'),
  );
  assert.equal(formatTable([], ['id']), '(none)\n');
});

test('an unknown shape still prints: the first row\'s scalar fields', () => {
  assert.deepEqual(pickColumns([{ x: 1, nested: { a: 1 }, y: 'z' }], ['id']), ['x', 'y']);
});

test('records flatten nested objects and lead with the preferred keys', () => {
  const text = formatRecord({ state: 'ok', items: { total: 5, failed: 1 }, id: 'req_1', steps: [] }, ['id', 'items']);
  assert.equal(text, ['id:           req_1', 'items.total:  5', 'items.failed: 1', 'state:        ok', 'steps:        -', ''].join('\n'));
});

test('--json output is indented JSON with a newline, null for an empty answer', () => {
  assert.equal(toJson({ a: 1 }), '{\n  "a": 1\n}\n');
  assert.equal(toJson(undefined), 'null\n');
});
