// docs/replies.md is generated from the reply catalogue (scripts/gen-reply-table.ts): it must be
// current, and every catalogue entry must appear with its code and enhanced code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PROTOCOL_WHEN, renderReplyTable, requiredParams, REPLIES_MD } from '../../scripts/gen-reply-table.ts';
import { replies, SmtpReply } from '../../src/pipeline/reply.ts';
import { protocolReplies } from '../../src/fronts/smtp/protocol-replies.ts';
import { STAGES } from '../../src/pipeline/stages.ts';

const paramCases: Array<{ desc: string; fn: (...a: never[]) => unknown; expected: string[] }> = [
  { desc: 'one parameter', fn: (domain: string) => domain, expected: ['domain'] },
  { desc: 'no parameter', fn: () => 1, expected: [] },
  { desc: 'a default is not required', fn: (text = 'x') => text, expected: [] },
  { desc: 'two parameters', fn: (a: number, b: string) => a + b, expected: ['a', 'b'] },
];
for (const c of paramCases) {
  test(`requiredParams: ${c.desc}`, () => assert.deepEqual(requiredParams(c.fn), c.expected));
}

test('docs/replies.md is up to date (else: node_modules/.bin/node scripts/gen-reply-table.ts)', () => {
  assert.equal(readFileSync(REPLIES_MD, 'utf8'), renderReplyTable());
});

test('every reply of the catalogue is in the table, placeholders filled', () => {
  const table = renderReplyTable();
  for (const [name, make] of Object.entries(replies)) {
    // Policy defaults take a stage: one row per stage, named name(stage).
    const takesStage = make.toString().includes('stage');
    for (const arg of takesStage ? STAGES : ['<x>']) {
      const r = (make as (...a: string[]) => { code: number; enhanced: string })(arg, '<y>');
      const label = takesStage ? `${name}(${arg})` : name;
      assert.ok(table.includes(`| \`${label}\` | ${r.code} | ${r.enhanced} |`), label);
    }
  }
  assert.ok(!table.includes('undefined'), 'a parameter was not filled');
  assert.ok(table.includes('`Relaying denied: we do not accept mail for <domain>`'));
});

test("every reply of the SMTP front's engine is in the table with when it is sent", () => {
  const table = renderReplyTable();
  for (const [name, entry] of Object.entries(protocolReplies)) {
    const r = entry instanceof SmtpReply ? entry : (entry as (...a: string[]) => SmtpReply)('<x>', '<y>');
    const when = PROTOCOL_WHEN[name as keyof typeof protocolReplies];
    assert.ok(when && when.length > 3, `${name} has no "sent when" line in scripts/gen-reply-table.ts`);
    assert.ok(table.includes(`| \`${name}\` | ${r.code} | ${r.enhanced || '–'} |`), name);
  }
  assert.ok(table.includes('| `startData` | 354 | – | `End data with <CR><LF>.<CR><LF>` | intermediate |'));
});
