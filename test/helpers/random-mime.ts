// Random flat MIME-ish messages for the walk's property tests (test/unit/fuzz-mime.test.ts,
// content-walk-equivalence.test.ts): header lines, boundaries (also reused and malformed),
// encoded bodies, RTLO and folded lines, bare CR/LF, and random strings between them.
import fc from 'fast-check';

export const mimeToken = fc.oneof(
  fc.constantFrom(
    'Content-Type: multipart/mixed; boundary="b"\r\n',
    'Content-Type: multipart/alternative; boundary=b\r\n',
    'Content-Type: multipart/related; boundary=c; boundary=b\r\n',
    'Content-Type: message/rfc822\r\n',
    'Content-Type: text/html; charset=utf-8\r\n',
    'Content-Type: text/plain; boundary=b\r\n',
    'Content-Type: application/octet-stream; name="a.exe"\r\n',
    'Content-Transfer-Encoding: base64\r\n',
    'Content-Transfer-Encoding: quoted-printable\r\n',
    "Content-Disposition: attachment; filename*=UTF-8''%E2%80%AEfdp.exe\r\n",
    'Content-Disposition: attachment; filename="=?utf-8?B?aW52b2ljZS5wZGYuZXhl?="\r\n',
    'Content-Disposition: attachment; filename*0="x."; filename*1="scr"\r\n',
    '\r\n',
    '--b\r\n',
    '--b--\r\n',
    '--c\r\n',
    '--c--\r\n',
    '\r--b\r\n',
    '--b',
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
export const flatMimeMessage = fc.array(mimeToken, { maxLength: 60 }).map((parts) => Buffer.from(`Subject: fuzz\r\n${parts.join('')}`, 'latin1'));
