import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createProgress, decile, describe, renderBar } from './progress.js';

test('the bar fills in proportion and never overflows', () => {
  assert.equal(renderBar(0, 10, 10), '[----------]   0%');
  assert.equal(renderBar(5, 10, 10), '[#####-----]  50%');
  assert.equal(renderBar(12, 10, 10), '[##########] 100%');
  assert.equal(renderBar(0, 0, 4), '[####] 100%');
  assert.equal(describe(3, 1, 5), '3/5 rows, 1 failed');
  assert.equal(decile(999, 1000), 9);
});

test('without a terminal: one line per 10% reached, not one per poll', () => {
  let text = '';
  const p = createProgress({ write: (s: string) => (text += s) }, 'import');
  for (const done of [0, 0, 5, 10, 11, 55, 99, 100]) p.update(done, done > 50 ? 1 : 0, 100);
  p.finish();
  assert.deepEqual(text.trim().split('\n'), [
    'import 0% (0/100 rows)',
    'import 10% (10/100 rows)',
    'import 50% (55/100 rows, 1 failed)',
    'import 90% (99/100 rows, 1 failed)',
    'import 100% (100/100 rows, 1 failed)',
  ]);
});

test('on a terminal: the bar is redrawn in place, only when it changed, and the line ended at the end', () => {
  const writes: string[] = [];
  const p = createProgress({ write: (s: string) => writes.push(s), isTTY: true }, 'import');
  p.update(1, 0, 4);
  p.update(1, 0, 4);
  p.update(4, 1, 4);
  p.finish();
  assert.equal(writes.length, 3);
  assert.ok(writes[0]!.startsWith('\r\x1b[Kimport ['));
  assert.match(writes[1]!, /100% 4\/4 rows, 1 failed$/);
  assert.equal(writes[2], '\n');
});
