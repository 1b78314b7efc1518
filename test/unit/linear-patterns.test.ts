// Item 1 of issue 14, table-driven: the glob matcher, RE2-backed rule regexes, the From address
// parser and the HTML-to-text rendering give the expected results on ordinary input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileGlob, globMatch, parseRegex, looksLikeRegex } from '../../src/message/text-patterns.ts';
import { extractAddresses } from '../../src/pipeline/message-facts.ts';
import { htmlToText } from '../../src/message/html-text.ts';
import { compileCondition } from '../../src/rules/condition.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';
import { runRulesCommand } from '../../src/cli/rules.ts';
import { makeRulesDir } from '../helpers/rules-dir.ts';

const globCases = [
  { glob: '*', text: '', expected: true },
  { glob: '*', text: 'anything', expected: true },
  { glob: 'x-*', text: 'X-Spam-Flag', expected: true },
  { glob: 'x-*', text: 'Y-X-Spam', expected: false },
  { glob: '*.bulk.example', text: 'a.b.BULK.example', expected: true },
  { glob: '*.bulk.example', text: 'bulk.example', expected: false },
  { glob: 'a?c', text: 'abc', expected: true },
  { glob: 'a?c', text: 'ac', expected: false },
  { glob: '*a*b*c', text: 'xxaxxbxxc', expected: true },
  { glob: '*a*b*c', text: 'xxaxxbxxcx', expected: false },
  { glob: 'a**b', text: 'ab', expected: true },
  { glob: '127.0.0.*', text: '127.0.0.2', expected: true },
  { glob: '[x]', text: '[x]', expected: true },
  { glob: 'a.c', text: 'abc', expected: false },
];
for (const c of globCases) {
  test(`glob ${c.glob} ~ ${JSON.stringify(c.text)} → ${c.expected}`, () => {
    assert.equal(compileGlob(c.glob).test(c.text), c.expected);
  });
}

const regexCases = [
  { re: '/viagra/i', text: 'Cheap VIAGRA', expected: true },
  { re: 'viagra', text: 'Cheap VIAGRA', expected: false },
  { re: '/^a.b$/s', text: 'a\nb', expected: true },
  { re: '/^b$/m', text: 'a\nb', expected: true },
  { re: '/^b$/', text: 'a\nb', expected: false },
  { re: '/\\binvoice\\b/i', text: 'Your Invoice 42', expected: true },
  { re: '/^=\\?utf-8\\?/', text: '=?utf-8?q?x?=', expected: true },
  { re: '/^(a+)+$/', text: 'a'.repeat(28) + '!', expected: false },
  { re: '/x/u', text: 'axb', expected: true },
];
for (const c of regexCases) {
  test(`regex ${c.re} on ${JSON.stringify(c.text.slice(0, 20))} → ${c.expected}`, () => {
    assert.equal(parseRegex(c.re).test(c.text), c.expected);
  });
}

const refused = [
  { re: '/(a)\\1/', message: /backreferences and lookaround/ },
  { re: '/a(?=b)/', message: /backreferences and lookaround/ },
  { re: '/(?<!a)b/', message: /backreferences and lookaround/ },
  { re: '/x/g', message: /flags "g" not allowed/ },
  { re: '/(unclosed/', message: /invalid regex/ },
];
for (const c of refused) {
  test(`regex ${c.re} is refused`, () => {
    assert.throws(() => parseRegex(c.re), c.message);
  });
}

test('looksLikeRegex', () => {
  assert.equal(looksLikeRegex('/a/i'), true);
  assert.equal(looksLikeRegex('/a/'), true);
  assert.equal(looksLikeRegex('a/b'), false);
  assert.equal(looksLikeRegex('//'), false);
  assert.equal(looksLikeRegex('/a/1'), false);
});

test('globMatch on pre-lowered input', () => {
  assert.equal(globMatch('a*', 'abc'), true);
});

test('a rule regex RE2 cannot run is a located error of the condition', () => {
  assert.throws(
    () => compileCondition({ 'message.subject': { regex: '/(a)\\1/' } }, { facts: knownFacts([]), baseDir: '.', file: 'x.yaml' }),
    (err: unknown) => err instanceof SourceErrors && /backreferences/.test(String(err)),
  );
});

test('rules check refuses a backreference and a lookahead with FILE:LINE', async () => {
  const dir = makeRulesDir({
    '10-a.yaml':
      'rules:\n  - name: A\n    description: d\n    when: { message.subject: { regex: "/(a)\\\\1/" } }\n    score: 1\n' +
      '  - name: B\n    description: d\n    when: { message.subject: { regex: "/a(?=b)/" } }\n    score: 1\n',
  });
  let err = '';
  const code = await runRulesCommand(['check', dir], { out: () => undefined, err: (s) => void (err += s) });
  assert.equal(code, 1);
  assert.match(err, new RegExp(`${dir}/10-a\\.yaml:4: rules\\[0\\]\\.when\\.message\\.subject\\.regex: invalid regex: .*backreferences`));
  assert.match(err, new RegExp(`${dir}/10-a\\.yaml:8: rules\\[1\\]\\.when\\.message\\.subject\\.regex: invalid regex: .*lookaround`));
});

const fromCases = [
  { value: 'Alice <alice@example.com>', expected: ['alice@example.com'] },
  { value: 'alice@example.com', expected: ['alice@example.com'] },
  { value: '"Bob, @home" <Bob@Example.NET>, carol@x.example', expected: ['bob@example.net', 'carol@x.example'] },
  { value: 'alice@example.com (Alice <fake@evil.example>)', expected: ['alice@example.com'] },
  { value: '(nested (comment @x)) dave@d.example', expected: ['dave@d.example'] },
  { value: 'undisclosed-recipients:;', expected: [] },
  { value: 'group: a@b.example;', expected: ['a@b.example'] },
  { value: '<a<b@c.example>', expected: ['b@c.example'] },
  { value: '"unterminated <x@y.example>', expected: [] },
  { value: 'no address here', expected: [] },
  { value: '@only', expected: [] },
  { value: 'a@', expected: [] },
  { value: '"quoted\\"escape" <q@e.example>', expected: ['q@e.example'] },
];
for (const c of fromCases) {
  test(`From ${JSON.stringify(c.value)} → ${JSON.stringify(c.expected)}`, () => {
    assert.deepEqual(extractAddresses(c.value), c.expected);
  });
}

test('From: at most 100 addresses are taken', () => {
  assert.equal(extractAddresses(Array.from({ length: 300 }, (_, i) => `u${i}@x.example`).join(', ')).length, 100);
});

// Expected outputs are the old regex renderer's (the one it replaced), so body rules match as before.
const htmlCases: Array<[string, string]> = [
  ['<p>Hello <b>world</b></p><p>Second</p>', 'Hello world\nSecond'],
  ['<html><head><title>t</title></head><body>Text &amp; more &lt;b&gt; &#65;&#x42; &nbsp;x</body></html>', 'Text & more <b> AB x'],
  ['a<br>b<br/>c<BR />d', 'a\nb\nc\nd'],
  ['<script>var x = "<p>";</script>visible<style>p{}</style>', 'visible'],
  ['<div>one</div>\n\n\n<div>two</div>', 'one\ntwo'],
  ['x &bogus; y &#0; z &#x110000; w', 'x &bogus; y &#0; z &#x110000; w'],
  ['a < b and c > d', 'a d'],
  ['<SCRIPT type="x">hidden</SCRIPT >shown', 'shown'],
  ['unclosed <script> stays', 'unclosed stays'],
  ['tabs\t\tand   spaces', 'tabs and spaces'],
];
for (const [h, expected] of htmlCases) {
  test(`htmlToText agrees with the old renderer: ${JSON.stringify(h.slice(0, 40))}`, () => {
    assert.equal(htmlToText(h, 100_000), expected);
  });
}

test('htmlToText caps its output', () => {
  assert.equal(htmlToText('x'.repeat(1000), 10).length, 10);
});

test('htmlToText: a cut on whitespace is trimmed (fuzz counterexample "!<\\n<", 3)', () => {
  assert.equal(htmlToText('!<\n<', 3), '!<');
});
