// Fuzzing the streaming MIME walk (src/message/mime-walk.ts), the one parser every content check
// reads: random and mutated multipart messages, split into chunks at random points, never throw,
// stay within the walk's limits, and give the same result whatever the chunking (issue 14).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULT_WALK_LIMITS, walkMime } from '../../src/message/mime-walk.ts';
import { runFuzzAsync } from '../helpers/fuzz.ts';
import { flatMimeMessage as message } from '../helpers/random-mime.ts';

function chunks(buf: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out.filter((b) => b.length > 0);
}

test('fuzz: the MIME walk never throws, stays bounded and does not depend on chunk boundaries', async (t) => {
  const runs = await runFuzzAsync(
    'MIME walk',
    fc.asyncProperty(message, fc.array(fc.nat(), { maxLength: 6 }), async (buf, cuts) => {
      const whole = await walkMime([buf]);
      const split = await walkMime(chunks(buf, cuts));
      assert.ok(whole.partCount <= DEFAULT_WALK_LIMITS.maxParts + 1, 'part count within the limit');
      assert.ok(whole.depth <= DEFAULT_WALK_LIMITS.maxDepth + 1, 'depth within the limit');
      assert.deepEqual(
        split.parts.map((p) => [p.contentType, p.filename, p.size]),
        whole.parts.map((p) => [p.contentType, p.filename, p.size]),
      );
      assert.equal(split.text, whole.text);
      assert.deepEqual(split.malformed, whole.malformed);
    }),
    500,
  );
  t.diagnostic(`${runs} messages walked`);
});
