import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commandHelp, findCommand, overview, parseCommand, synopsis, type CommandShape } from './args.js';
import { UsageError } from './errors.js';

const orgCreate: CommandShape = {
  words: ['org', 'create'],
  summary: 'create an organization',
  args: ['NAME'],
  options: {
    reseller: { type: 'string', value: 'ID', required: true, help: 'reseller' },
    member: { type: 'string', multiple: true, help: 'member' },
  },
  kind: 'api',
};
const orgList: CommandShape = { words: ['org', 'list'], summary: 'list', kind: 'list' };
const init: CommandShape = { words: ['init'], summary: 'init', kind: 'local', options: { 'data-dir': { type: 'string', help: 'dir' } } };

test('flags and positionals parse into typed values', () => {
  const p = parseCommand(orgCreate, ['shop', '--reseller', 'rsl_1', '--member', 'a', '--member=b', '--json']);
  assert.deepEqual(p.args, ['shop']);
  assert.equal(p.opts.str('reseller'), 'rsl_1');
  assert.deepEqual(p.opts.list('member'), ['a', 'b']);
  assert.equal(p.opts.bool('json'), true);
  assert.equal(p.opts.bool('all'), false);
});

test('usage errors name what is wrong', () => {
  assert.throws(() => parseCommand(orgCreate, ['--reseller', 'r']), (e: unknown) => e instanceof UsageError && /missing NAME/.test(e.message));
  assert.throws(() => parseCommand(orgCreate, ['shop']), /--reseller is required/);
  assert.throws(() => parseCommand(orgCreate, ['shop', 'extra', '--reseller', 'r']), /unexpected argument "extra"/);
  assert.throws(() => parseCommand(orgCreate, ['shop', '--reseller', 'r', '--nme', 'x']), /--nme/);
  assert.throws(() => parseCommand(orgCreate, ['shop', '--reseller']), /argument missing/);
});

test('--help skips the checks so help works on an incomplete command line', () => {
  assert.equal(parseCommand(orgCreate, ['--help']).help, true);
  assert.equal(parseCommand(orgCreate, ['-h']).help, true);
});

test('common options follow the kind: local commands take no --url, lists page', () => {
  assert.throws(() => parseCommand(init, ['--url', 'http://x']), /--url/);
  const p = parseCommand(orgList, ['--limit', '5', '--cursor', 'abc', '--all', '--token', 't']);
  assert.equal(p.opts.int('limit'), 5);
  assert.equal(p.opts.str('cursor'), 'abc');
  assert.throws(() => parseCommand(orgCreate, ['x', '--reseller', 'r', '--limit', '5']), /--limit/);
});

test('integers are checked, with the flag named', () => {
  const p = parseCommand(orgList, ['--limit', '12x']);
  assert.throws(() => p.opts.int('limit'), /--limit must be an integer, got "12x"/);
  const q = parseCommand(orgList, ['--limit', '0']);
  assert.throws(() => q.opts.int('limit', { min: 1 }), /at least 1/);
  assert.equal(parseCommand(orgList, []).opts.int('limit'), undefined);
});

test('the longest matching command wins; a bare group is reported as a group', () => {
  const cmds = [orgCreate, orgList, init];
  const hit = findCommand(cmds, ['org', 'create', 'shop']);
  assert.ok(hit && 'command' in hit);
  assert.equal(hit.command, orgCreate);
  assert.deepEqual(hit.rest, ['shop']);
  assert.deepEqual(findCommand(cmds, ['org']), { group: 'org' });
  assert.deepEqual(findCommand(cmds, ['org', 'nope']), { group: 'org' });
  assert.equal(findCommand(cmds, ['nope']), null);
});

test('help texts show the synopsis, required flags and every option', () => {
  assert.equal(synopsis(orgCreate), 'hmc org create NAME --reseller ID [options]');
  assert.equal(synopsis({ ...orgList, args: ['ID?', 'MORE...'] }), 'hmc org list [ID] [MORE ...] [options]');
  const help = commandHelp(orgCreate);
  assert.match(help, /--member X +member \(repeatable\)/);
  assert.match(help, /--token TOKEN/);
  assert.match(help, /-h, --help/);
  assert.match(overview([orgCreate, orgList, init], 'org'), /org create +create an organization/);
  assert.doesNotMatch(overview([orgCreate, orgList, init], 'org'), /init/);
});
