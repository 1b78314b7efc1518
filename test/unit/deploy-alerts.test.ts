// deploy/prometheus (alert rules, their promtool unit tests, the scrape config) and the Grafana
// dashboard: promtool accepts and passes them, and every metric they use is one the code registers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { parse } from 'yaml';

const root = resolve(import.meta.dirname, '..', '..');
const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
const noPromtool = PROMTOOL ? false : 'promtool is missing: apt-get install -y prometheus (npm test installs it as root)';

function promtool(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(PROMTOOL as string, args, { cwd: root, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test('promtool check rules deploy/prometheus/alerts.yml', { skip: noPromtool }, () => {
  const r = promtool(['check', 'rules', 'deploy/prometheus/alerts.yml']);
  assert.equal(r.status, 0, r.out);
});

test('promtool check config deploy/prometheus/prometheus.yml', { skip: noPromtool }, () => {
  const r = promtool(['check', 'config', 'deploy/prometheus/prometheus.yml']);
  assert.equal(r.status, 0, r.out);
});

test('promtool test rules deploy/prometheus/tests/*.test.yml', { skip: noPromtool }, () => {
  const dir = join(root, 'deploy', 'prometheus', 'tests');
  const files = readdirSync(dir).filter((f) => f.endsWith('.test.yml'));
  assert.ok(files.length > 0);
  const r = promtool(['test', 'rules', ...files.map((f) => join('deploy', 'prometheus', 'tests', f))]);
  assert.equal(r.status, 0, r.out);
});

interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string }> }>;
}

const rules = parse(readFileSync(join(root, 'deploy', 'prometheus', 'alerts.yml'), 'utf8')) as RuleFile;
const allRules = rules.groups.flatMap((g) => g.rules);

test('the alerts the operator guide promises exist', () => {
  const names = new Set(allRules.map((r) => r.alert).filter((a) => a !== undefined));
  for (const a of [
    'MailgateDown',
    'MailgateBackendDown',
    'MailgateRedisDown',
    'MailgateClamdDown',
    'MailgateRulesReloadFailing',
    'MailgateRejectRatioSpike',
    'MailgateQuarantineGrowth',
    'MailgateLatencyHigh',
  ]) {
    assert.ok(names.has(a), a);
  }
});

/** Every alert has a promtool unit test (a rule without one can be silently wrong). */
test('every alert is exercised by deploy/prometheus/tests', () => {
  const dir = join(root, 'deploy', 'prometheus', 'tests');
  const tested = new Set<string>();
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.test.yml'))) {
    const doc = parse(readFileSync(join(dir, f), 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
    for (const t of doc.tests) for (const a of t.alert_rule_test ?? []) if (a.exp_alerts.length > 0) tested.add(a.alertname);
  }
  for (const r of allRules) if (r.alert) assert.ok(tested.has(r.alert), `${r.alert} has no firing test`);
});

/** `name: 'mailgate_…'` literals in src/**\/*.ts, wherever the metric modules move. */
function registeredInSource(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        const text = readFileSync(p, 'utf8');
        for (const m of text.matchAll(/name: '(mailgate_[a-z0-9_]+)'/g)) names.add(m[1] as string);
      }
    }
  };
  walk(join(root, 'src'));
  return names;
}

async function defaultMetricNames(): Promise<Set<string>> {
  const reg = new Registry();
  collectDefaultMetrics({ register: reg });
  return new Set((await reg.getMetricsAsJSON()).map((m) => m.name));
}

function pending(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync(join(root, 'deploy', 'metrics-pending.txt'), 'utf8').split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    const sp = t.indexOf(' ');
    out.set(sp < 0 ? t : t.slice(0, sp), sp < 0 ? '' : t.slice(sp).trim());
  }
  return out;
}

/** Metric names in a PromQL expression: identifiers with a metric prefix (labels and functions are not). */
export function metricNames(expr: string): string[] {
  const out: string[] = [];
  for (const m of expr.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const id = m[0];
    const before = expr[(m.index ?? 0) - 1];
    // Inside a quoted label value ("mailgate"), or a label name in by (…)/{…}: not metrics.
    if (before === '"' || before === '$') continue;
    if (id === 'up' || id.startsWith('mailgate_') || id.startsWith('mailgate:') || id.startsWith('process_') || id.startsWith('nodejs_')) out.push(id);
  }
  return out;
}

const SUFFIXES = ['_bucket', '_count', '_sum'];

function usedExpressions(): Array<{ where: string; expr: string }> {
  const out = allRules.map((r) => ({ where: `alerts.yml ${r.alert ?? r.record}`, expr: r.expr }));
  const dash = JSON.parse(readFileSync(join(root, 'deploy', 'grafana', 'dashboards', 'mailgate.json'), 'utf8')) as {
    panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
    templating: { list: Array<{ name: string; query: { query: string } }> };
  };
  for (const p of dash.panels) for (const t of p.targets ?? []) out.push({ where: `dashboard "${p.title}"`, expr: t.expr });
  for (const v of dash.templating.list) out.push({ where: `dashboard variable ${v.name}`, expr: v.query.query });
  return out;
}

test('metricNames finds metrics, not labels, functions or label values', () => {
  assert.deepEqual(metricNames('sum by (le) (rate(mailgate_x_bucket{job="mailgate", instance=~"$instance"}[5m])) / up'), ['mailgate_x_bucket', 'up']);
  assert.deepEqual(metricNames('mailgate:ratio:rate10m > 3 * process_cpu_seconds_total'), ['mailgate:ratio:rate10m', 'process_cpu_seconds_total']);
});

test('every metric the dashboard and alerts use is registered by the code (or listed as pending)', async () => {
  const registered = registeredInSource();
  const defaults = await defaultMetricNames();
  const recorded = new Set(allRules.map((r) => r.record).filter((r) => r !== undefined));
  const pend = pending();
  const known = (n: string) => registered.has(n) || defaults.has(n) || n === 'up';
  const problems: string[] = [];
  const usedPending = new Set<string>();
  for (const { where, expr } of usedExpressions()) {
    for (const n of metricNames(expr)) {
      if (n.includes(':')) {
        if (!recorded.has(n)) problems.push(`${where}: recording rule ${n} is not defined in alerts.yml`);
        continue;
      }
      const base = SUFFIXES.reduce(
        (b, s) => (b.endsWith(s) && (known(b.slice(0, -s.length)) || pend.has(b.slice(0, -s.length))) ? b.slice(0, -s.length) : b),
        n,
      );
      if (known(base)) continue;
      if (pend.has(base)) usedPending.add(base);
      else problems.push(`${where}: ${n} is not registered in src/ (name: '…') nor listed in deploy/metrics-pending.txt`);
    }
  }
  assert.deepEqual(problems, []);
  // Pending entries that the code now registers (feature merged) or nothing uses must go.
  for (const n of pend.keys()) {
    assert.ok(!registered.has(n), `${n} is registered now: remove it from deploy/metrics-pending.txt`);
    assert.ok(usedPending.has(n), `${n} in deploy/metrics-pending.txt is used by neither the dashboard nor the alerts`);
  }
});

test('the dashboard covers what the operator guide lists', () => {
  const exprs = usedExpressions()
    .map((e) => e.expr)
    .join('\n');
  for (const m of [
    'mailgate_connections_total',
    'mailgate_messages_total',
    'mailgate_check_duration_seconds_bucket',
    'mailgate_auth_results_total',
    'mailgate_ratelimit_exceeded_total',
    'mailgate_greylist_total',
    'mailgate_av_scans_total',
    'mailgate_backend_replies_total',
    'mailgate_quarantine_messages',
    'mailgate_redis_up',
    'mailgate_dns_queries_total',
  ]) {
    assert.ok(exprs.includes(m), m);
  }
});

test('dashboard JSON: unique panel ids, one datasource uid that Grafana provisioning defines', () => {
  const dash = JSON.parse(readFileSync(join(root, 'deploy', 'grafana', 'dashboards', 'mailgate.json'), 'utf8')) as {
    uid: string;
    panels: Array<{ id: number; datasource?: { uid: string } }>;
  };
  const ids = dash.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  const ds = parse(readFileSync(join(root, 'deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8')) as {
    datasources: Array<{ uid: string }>;
  };
  const uids = new Set(ds.datasources.map((d) => d.uid));
  for (const p of dash.panels) if (p.datasource) assert.ok(uids.has(p.datasource.uid), `panel ${p.id}: datasource ${p.datasource.uid}`);
});
