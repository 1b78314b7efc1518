// The web console in headless Chromium (playwright-core, /usr/bin/chromium): 401 without
// credentials, log in, filter, open a message, release it and see it arrive in Postfix; a forged
// cross-site POST is refused; a script-laden HTML message renders inert (no script runs, nothing
// remote is fetched). Takes the screenshots of the docs (console.png and a phone-sized one) into a
// temp directory, or into MAILGATE_SCREENSHOT_DIR (`MAILGATE_SCREENSHOT_DIR=docs/img` refreshes
// the docs' pictures): a test run never changes the working tree.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { hashPassword } from '../../src/admin/password.ts';
import { startQuarantineEnv, type QuarantineEnv } from '../helpers/quarantine-env.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = process.env.MAILGATE_SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), 'mailgate-console-'));
let env: QuarantineEnv;
let browser: Browser;
let base: string;
/** Records every request that reaches it: a "remote" site a message must never make us fetch. */
let tracker: http.Server;
const trackerHits: string[] = [];
let trackerBase: string;

before(async () => {
  tracker = http.createServer((req, res) => {
    trackerHits.push(req.url ?? '');
    res.end('x');
  });
  await new Promise<void>((r) => tracker.listen(0, '127.0.0.1', () => r()));
  trackerBase = `http://127.0.0.1:${(tracker.address() as AddressInfo).port}`;
  env = await startQuarantineEnv({
    admin: { host: '127.0.0.1', port: 0, auth: { users: [{ name: 'admin', password: await hashPassword('correct horse battery') }] } },
  });
  base = `http://127.0.0.1:${env.gw.adminPort}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});
after(async () => {
  await browser?.close();
  await env?.close();
  tracker?.close();
});

async function login(page: import('playwright-core').Page): Promise<void> {
  await page.goto(`${base}/quarantine/login`);
  await page.fill('input[name=user]', 'admin');
  await page.fill('input[name=password]', 'correct horse battery');
  await Promise.all([page.waitForURL(`${base}/quarantine`), page.click('button[type=submit]')]);
}

test('console: 401 without credentials; log in, filter, open, release, and the message arrives', {
  skip: existsSync(CHROMIUM) ? false : 'chromium not installed',
}, async () => {
  const forBob = await env.quarantine({ subject: 'QUARANTINE-ME invoice', to: ['bob@example.test'] });
  await env.quarantine({ subject: 'QUARANTINE-ME newsletter' });
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const denied = await page.goto(`${base}/quarantine`);
  assert.equal(denied?.status(), 401);
  assert.equal(await page.locator('input[name=password]').count(), 1, 'the 401 offers the login form');
  const wrong = await page.goto(`${base}/quarantine/login`);
  assert.equal(wrong?.status(), 200);
  await page.fill('input[name=user]', 'admin');
  await page.fill('input[name=password]', 'nope');
  await page.click('button[type=submit]');
  await page.waitForSelector('.flash.bad');
  assert.match(await page.locator('.flash.bad').innerText(), /Wrong user or password/);

  await login(page);
  const list = await page.goto(`${base}/quarantine`);
  assert.match(list?.headers()['content-security-policy'] ?? '', /default-src 'none'/);
  assert.ok((await page.locator('table.list tbody tr').count()) >= 2);
  await page.setViewportSize({ width: 1100, height: 700 });
  await page.screenshot({ path: join(SHOTS, 'console.png'), fullPage: false });
  await page.fill('input[name=rcpt]', 'bob@example.test');
  await Promise.all([page.waitForURL(/rcpt=bob/), page.click('form.filters button[type=submit]')]);
  const rows = page.locator('table.list tbody tr');
  assert.equal(await rows.count(), 1);
  assert.match(await rows.first().innerText(), /bob@example\.test/);

  await Promise.all([page.waitForURL(`${base}/quarantine/m/${forBob.id}`), rows.first().locator('a').click()]);
  assert.match(await page.locator('h1').innerText(), /QUARANTINE-ME invoice/);
  assert.match(await page.locator('pre.body').innerText(), new RegExp(forBob.tok));
  assert.match(await page.locator('dl.summary').innerText(), /QUARANTINE_ME/);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(SHOTS, 'console-phone.png'), fullPage: false });
  // Usable on a phone: nothing wider than the screen.
  assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 390 + 1, 'no horizontal scrolling at 390 px');
  await page.setViewportSize({ width: 1100, height: 700 });

  await Promise.all([page.waitForURL(`${base}/quarantine/m/${forBob.id}/release`), page.click('form[action$="/release"] button')]);
  assert.match(await page.locator('.flash').innerText(), /Released by admin\. Backend replied: 250 2\.0\.0/);
  assert.equal((await env.waitDelivered('bob', forBob.tok)).length, 1, 'arrived in the Postfix Maildir');
  // Releasing again from the console says so and sends nothing.
  await page.goto(`${base}/quarantine/m/${forBob.id}`);
  await page.click('form[action$="/release"] button');
  await page.waitForSelector('.flash');
  assert.match(await page.locator('.flash').innerText(), /Already released .* by admin/);
  await ctx.close();
});

test('console: a forged cross-site POST is refused (logged-in browser, no CSRF token)', {
  skip: existsSync(CHROMIUM) ? false : 'chromium not installed',
}, async () => {
  const q = await env.quarantine({ subject: 'QUARANTINE-ME target' });
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await login(page);
  // The attacker's page, on another origin, auto-submits a release form to the console.
  const evil = http.createServer((_req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(
      `<form id=f method=post action="${base}/quarantine/m/${q.id}/release"><input name=to value="carol@example.test"></form><script>document.getElementById('f').submit()</script>`,
    );
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
  try {
    const statuses: number[] = [];
    page.on('response', (r) => {
      if (r.url().includes('/release')) statuses.push(r.status());
    });
    await page.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
    await page.waitForURL(/\/release$/);
    await page.waitForLoadState();
    assert.deepEqual(statuses, [403]);
    assert.match(await page.content(), /cross-site request refused/);
  } finally {
    evil.close();
  }
  const e = await env.gw.quarantine.get(q.id);
  assert.equal(e?.row.releasedAt, undefined, 'still held');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(env.delivered('carol', q.tok).length, 0);
  await ctx.close();
});

test('console: a script-laden HTML message renders inert — no script runs, nothing remote is fetched', {
  skip: existsSync(CHROMIUM) ? false : 'chromium not installed',
}, async () => {
  const htmlBody = [
    '--b1',
    'Content-Type: text/html; charset=utf-8',
    '',
    `<html><body><h1>Win a prize</h1><script>document.title='PWNED';fetch('${trackerBase}/script')</script>`,
    `<img src="${trackerBase}/pixel.png" onerror="document.title='PWNED2'"><iframe src="${trackerBase}/frame"></iframe>`,
    `<a href="javascript:alert(1)">click</a><style>@import url(${trackerBase}/css);</style><p>Claim it now &lt;3</p></body></html>`,
    '--b1--',
    '',
  ].join('\r\n');
  const q = await env.quarantine({
    subject: 'QUARANTINE-ME <script>alert(1)</script>',
    headers: 'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b1"\r\n',
    body: htmlBody,
  });
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await login(page);
  const requests: string[] = [];
  const problems: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  const res = await page.goto(`${base}/quarantine/m/${q.id}`);
  assert.equal(res?.status(), 200);
  await page.waitForTimeout(500);
  assert.notEqual(await page.title(), 'PWNED');
  assert.ok(!(await page.title()).startsWith('PWNED'));
  const dom = await page.evaluate(() => ({
    scripts: document.querySelectorAll('script').length,
    imgs: document.querySelectorAll('img').length,
    iframes: document.querySelectorAll('iframe').length,
    jsLinks: document.querySelectorAll('a[href^="javascript:"]').length,
  }));
  assert.deepEqual(dom, { scripts: 0, imgs: 0, iframes: 0, jsLinks: 0 });
  assert.match(await page.locator('h1').innerText(), /<script>alert\(1\)<\/script>/, 'subject shown as text');
  assert.match(await page.locator('pre.body').innerText(), /Claim it now <3/);
  assert.match(await page.locator('p.note').first().innerText(), /shown as plain text only/);
  assert.deepEqual(trackerHits, [], 'no remote fetch');
  assert.ok(
    requests.every((u) => u.startsWith(base)),
    requests.join('\n'),
  );
  assert.deepEqual(problems, []);
  await ctx.close();
});
