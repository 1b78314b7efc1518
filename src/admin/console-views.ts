// The quarantine console's pages: server-rendered HTML with no script at all, every value
// escaped by hono/html, one stylesheet of our own (CSP 'self') (a strict CSP forbids everything else), and a
// layout that turns tables into cards on a phone.
import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import type { IndexRow, ListFilter } from '../delivery/quarantine/entry.ts';
import type { StoredMeta } from '../delivery/quarantine/file-layout.ts';
import type { ReleaseResult } from '../delivery/release.ts';
import type { MessageView } from './message-view.ts';

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

export const CONSOLE_CSS = `
:root { --fg:#1b1f24; --muted:#5b6570; --line:#d8dde3; --bg:#f6f8fa; --accent:#0b5cad; --warn:#a33; }
* { box-sizing: border-box; }
body { margin:0; font:16px/1.45 system-ui, sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; align-items:center; justify-content:space-between; gap:1rem; padding:.6rem 1rem; background:#fff; border-bottom:1px solid var(--line); }
header a { color:var(--fg); font-weight:600; text-decoration:none; }
main { max-width:72rem; margin:0 auto; padding:1rem; }
h1 { font-size:1.3rem; margin:.2rem 0 1rem; }
a { color:var(--accent); }
form.filters { display:grid; grid-template-columns:repeat(auto-fit, minmax(11rem, 1fr)); gap:.5rem; margin-bottom:1rem; }
label { display:flex; flex-direction:column; font-size:.85rem; color:var(--muted); gap:.15rem; }
input, select, button { font:inherit; padding:.45rem .55rem; border:1px solid var(--line); border-radius:6px; background:#fff; min-height:2.6rem; }
button { background:var(--accent); color:#fff; border-color:var(--accent); cursor:pointer; }
button.danger { background:#fff; color:var(--warn); border-color:var(--warn); }
button.plain { background:#fff; color:var(--fg); }
table { width:100%; border-collapse:collapse; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; padding:.5rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; overflow-wrap:anywhere; }
th { font-size:.8rem; color:var(--muted); text-transform:uppercase; }
.status-held { color:var(--warn); } .status-released { color:#2a7a2a; }
.pager { display:flex; justify-content:space-between; margin:1rem 0; }
dl.summary { display:grid; grid-template-columns:max-content 1fr; gap:.3rem 1rem; background:#fff; border:1px solid var(--line); padding:.8rem; border-radius:6px; }
dl.summary dt { color:var(--muted); } dl.summary dd { margin:0; overflow-wrap:anywhere; }
.actions { display:flex; flex-wrap:wrap; gap:.6rem; margin:1rem 0; align-items:flex-end; }
.actions form { display:flex; flex-wrap:wrap; gap:.5rem; align-items:flex-end; }
pre.body { white-space:pre-wrap; overflow-wrap:anywhere; background:#fff; border:1px solid var(--line); padding:.8rem; border-radius:6px; max-height:70vh; overflow:auto; }
.note { color:var(--muted); font-size:.9rem; }
.flash { padding:.7rem; border-radius:6px; background:#fff; border:1px solid var(--line); margin-bottom:1rem; }
.flash.bad { border-color:var(--warn); color:var(--warn); }
.login { max-width:22rem; margin:3rem auto; display:flex; flex-direction:column; gap:.8rem; background:#fff; padding:1.2rem; border:1px solid var(--line); border-radius:8px; }
@media (max-width: 40rem) {
  table.list thead { display:none; }
  table.list, table.list tbody, table.list tr, table.list td { display:block; width:100%; }
  table.list tr { border-bottom:2px solid var(--line); padding:.4rem 0; }
  table.list td { border:0; padding:.15rem .6rem; }
  table.list td::before { content:attr(data-label) ": "; color:var(--muted); font-size:.8rem; }
  dl.summary { grid-template-columns:1fr; } dl.summary dd { margin-bottom:.4rem; }
}
`;

function page(title: string, body: Html, csrf?: string): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${title} · mailgate</title>
<link rel="stylesheet" href="/quarantine/console.css">
</head>
<body>
<header><a href="/quarantine">mailgate quarantine</a>${
    csrf
      ? html`<form method="post" action="/quarantine/logout"><input type="hidden" name="csrf" value="${csrf}"><button class="plain" type="submit">Log out</button></form>`
      : ''
  }</header>
<main>${body}</main>
</body>
</html>`;
}

export function loginPage(csrf: string, error?: string): Html {
  return page(
    'Log in',
    html`<form class="login" method="post" action="/quarantine/login">
<h1>Log in</h1>
${error ? html`<div class="flash bad" role="alert">${error}</div>` : ''}
<input type="hidden" name="csrf" value="${csrf}">
<label>User<input name="user" autocomplete="username" required autofocus></label>
<label>Password<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
</form>`,
  );
}

function qs(f: Record<string, string | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

export function listPage(o: {
  rows: IndexRow[];
  total: number;
  query: Record<string, string | undefined>;
  filter: ListFilter;
  csrf: string;
  user: string;
}): Html {
  const q = o.query;
  const limit = o.filter.limit ?? 50;
  const offset = o.filter.offset ?? 0;
  const status = q.status ?? 'held';
  const prev = offset > 0 ? qs({ ...q, offset: String(Math.max(0, offset - limit)) }) : undefined;
  const next = offset + o.rows.length < o.total ? qs({ ...q, offset: String(offset + limit) }) : undefined;
  return page(
    'Quarantine',
    html`<h1>Quarantine <span class="note">(${o.total} ${status === 'all' ? 'entries' : status})</span></h1>
<form class="filters" method="get" action="/quarantine">
<label>Recipient<input name="rcpt" value="${q.rcpt ?? ''}" placeholder="alice@example.test or @example.test"></label>
<label>Sender<input name="from" value="${q.from ?? ''}"></label>
<label>Rule<input name="rule" value="${q.rule ?? ''}"></label>
<label>Reason contains<input name="reason" value="${q.reason ?? ''}"></label>
<label>Since<input name="since" type="date" value="${q.since ?? ''}"></label>
<label>Status<select name="status">${['held', 'released', 'all'].map((s) => html`<option value="${s}"${s === status ? raw(' selected') : ''}>${s}</option>`)}</select></label>
<label>&nbsp;<button type="submit">Filter</button></label>
</form>
<table class="list">
<thead><tr><th>Received</th><th>Subject</th><th>From</th><th>To</th><th>Score</th><th>Reason</th><th>Status</th></tr></thead>
<tbody>
${o.rows.map(
  (r) => html`<tr>
<td data-label="Received">${r.received.slice(0, 16).replace('T', ' ')}</td>
<td data-label="Subject"><a href="/quarantine/m/${r.id}">${r.subject || '(no subject)'}</a></td>
<td data-label="From">${r.from || '<>'}</td>
<td data-label="To">${r.rcpts.join(', ')}</td>
<td data-label="Score">${r.score.toFixed(1)}</td>
<td data-label="Reason">${r.reason}</td>
<td data-label="Status" class="status-${r.releasedAt ? 'released' : 'held'}">${r.releasedAt ? 'released' : 'held'}</td>
</tr>`,
)}
</tbody>
</table>
${o.rows.length === 0 ? html`<p class="note">Nothing matches.</p>` : ''}
<div class="pager">${prev !== undefined ? html`<a href="/quarantine${prev}">← newer</a>` : html`<span></span>`}${next !== undefined ? html`<a href="/quarantine${next}">older →</a>` : html`<span></span>`}</div>`,
    o.csrf,
  );
}

export function messagePage(o: { row: IndexRow; meta: StoredMeta; view: MessageView; csrf: string }): Html {
  const { row, meta, view } = o;
  const auth = meta.auth
    ? Object.entries(meta.auth)
        .map(([k, v]) => `${k}=${v}`)
        .join('; ')
    : (view.headers.find((h) => h.name.toLowerCase() === 'authentication-results')?.value ?? '-');
  return page(
    view.subject || row.id,
    html`<h1>${view.subject || '(no subject)'}</h1>
<dl class="summary">
<dt>ID</dt><dd>${row.id}</dd>
<dt>Received</dt><dd>${row.received}</dd>
<dt>Client</dt><dd>${meta.client.ip} (HELO ${meta.client.helo})${meta.tls ? ` TLS ${meta.tls.protocol ?? ''}` : ''}</dd>
<dt>From</dt><dd>&lt;${meta.from}&gt;</dd>
<dt>To</dt><dd>${meta.rcpts.join(', ')}</dd>
<dt>Score</dt><dd>${meta.score}</dd>
<dt>Reason</dt><dd>${meta.reason}</dd>
<dt>Rules</dt><dd>${meta.rules.join(', ') || '-'}</dd>
<dt>Authentication</dt><dd>${auth}</dd>
<dt>Size</dt><dd>${meta.bytes} bytes</dd>
<dt>Status</dt><dd class="status-${row.releasedAt ? 'released' : 'held'}">${row.releasedAt ? `released ${row.releasedAt} by ${row.releasedBy ?? '?'} (${row.releaseReply ?? ''})` : 'held'}</dd>
</dl>
<div class="actions">
<form method="post" action="/quarantine/m/${row.id}/release">
<input type="hidden" name="csrf" value="${o.csrf}">
<label>Release to (optional)<input name="to" placeholder="${meta.rcpts.join(', ')}"></label>
<button type="submit">Release</button>
</form>
<form method="post" action="/quarantine/m/${row.id}/delete">
<input type="hidden" name="csrf" value="${o.csrf}">
<button class="danger" type="submit">Delete</button>
</form>
<a href="/api/quarantine/${row.id}/raw">Download .eml</a>
</div>
<h2>Message text</h2>
${view.hadHtml ? html`<p class="note">This message has an HTML part. It is shown as plain text only: no markup, scripts or remote content are ever rendered.</p>` : ''}
<pre class="body">${view.text}</pre>
${view.textTruncated ? html`<p class="note">(cut: the message is longer)</p>` : ''}
${view.attachments.length ? html`<h2>Attachments</h2><ul>${view.attachments.map((a) => html`<li>${a.filename} (${a.contentType}, ${a.size} bytes)</li>`)}</ul>` : ''}
<h2>Header</h2>
<table><tbody>${view.headers.map((h) => html`<tr><th>${h.name}</th><td>${h.value}</td></tr>`)}</tbody></table>`,
    o.csrf,
  );
}

export function resultPage(o: { title: string; message: string; ok: boolean; back?: string; csrf?: string; result?: ReleaseResult }): Html {
  return page(
    o.title,
    html`<h1>${o.title}</h1>
<div class="flash${o.ok ? '' : ' bad'}" role="status">${o.message}</div>
${o.result?.rcpts ? html`<ul>${o.result.rcpts.map((r) => html`<li>${r.rcpt}: ${r.reply}</li>`)}</ul>` : ''}
${o.back ? html`<p><a href="${o.back}">Back</a></p>` : ''}`,
    o.csrf,
  );
}

/** The digest link's page: confirm with a POST (a GET never releases: link scanners fetch GETs). */
export function digestConfirmPage(o: { token: string; row: IndexRow; rcpt: string }): Html {
  return page(
    'Release message',
    html`<h1>Release this message to ${o.rcpt}?</h1>
<dl class="summary">
<dt>Received</dt><dd>${o.row.received}</dd>
<dt>From</dt><dd>&lt;${o.row.from}&gt;</dd>
<dt>Reason</dt><dd>${o.row.reason}</dd>
</dl>
<div class="actions"><form method="post" action="/q/release/${o.token}"><button type="submit">Release to my mailbox</button></form></div>
<p class="note">The link works once.</p>`,
  );
}
