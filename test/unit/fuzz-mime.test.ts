// Fuzzing the streaming MIME walk (src/message/mime-walk.ts), the one parser every content check
// reads: random and mutated multipart messages, split into chunks at random points, never throw,
// stay within the walk's limits, and give the same result whatever the chunking (issue 14).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULT_WALK_LIMITS, walkMime } from '../../src/message/mime-walk.ts';
import { runFuzzAsync } from '../helpers/fuzz.ts';

const token = fc.oneof(
  fc.constantFrom(
    'Content-Type: multipart/mixed; boundary="b"\r\n',
    'Content-Type: multipart/alternative; boundary=b\r\n',
    'Content-Type: message/rfc822\r\n',
    'Content-Type: text/html; charset=utf-8\r\n',
    'Content-Type: application/octet-stream; name="a.exe"\r\n',
    'Content-Transfer-Encoding: base64\r\n',
    'Content-Transfer-Encoding: quoted-printable\r\n',
    "Content-Disposition: attachment; filename*=UTF-8''%E2%80%AEfdp.exe\r\n",
    '\r\n',
    '--b\r\n',
    '--b--\r\n',
    'TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\r\n',
    '=E2=80=AE=\r\n',
    'begin 644 x.exe\r\nM35J0\r\nend\r\n',
    '<a href="https://bit.ly/x">x</a>\r\n',
    ' folded\r\n',
    '\n',
    '\r',
  ),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
);
const message = fc.array(token, { maxLength: 60 }).map((parts) => Buffer.from(`Subject: fuzz\r\n${parts.join('')}`, 'latin1'));

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
