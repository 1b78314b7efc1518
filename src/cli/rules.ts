// `mailgate rules check|test|diff`: validate a rules directory, run a message file through the
// rules without sending anything (the postmaster's tuning tool), and replay recent traffic (or a
// corpus) against proposed rules to see every message whose fate would change, and why.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { loadConfig, type LoadedConfig } from '../config/load.ts';
import { locateConfig } from '../config/locate.ts';
import { SourceErrors } from '../config/yaml-source.ts';
import type { FactSet, FactValue } from '../pipeline/facts.ts';
import { STAGES } from '../pipeline/stages.ts';
import { createFactLookup } from '../rules/fact-lookup.ts';
import { loadRules, type LoadedRules } from '../rules/loader.ts';
import { knownFacts, knownSections } from '../checks/catalogue.ts';
import { decidedBy, formatFired, statusHeaderValue } from '../rules/explain.ts';
import { formatScore } from '../rules/template.ts';
import { captureFiles, readCapture } from '../rules/capture.ts';
import { runOffline, offlineChecks, readSidecar, DEFAULT_TEST_IP, type Envelope, type OfflineResult } from './offline-transaction.ts';
import type { SmtpReply } from '../pipeline/reply.ts';
import type { Verdict } from '../pipeline/verdict.ts';

const HELP = `NAME
    mailgate rules - check, test and compare rules directories

SYNOPSIS
    mailgate rules check [DIR] [--config FILE] [--verbose]
    mailgate rules test MESSAGE.eml [--ip IP] [--helo NAME] [--from ADDR] [--to ADDR]...
                        [--tls] [--fact NAME=VALUE]... [--rules DIR] [--config FILE]
                        [--offline] [--show-facts] [--json]
    mailgate rules diff NEW_DIR [--rules DIR] [--capture FILE | --corpus DIR]
                        [--config FILE] [--all] [--json]

DESCRIPTION
    The rules directory holds YAML files loaded in name order, then local.d/*.yaml
    (your overrides; see docs/rules.md). These commands load rules exactly as the
    gateway does, so a directory that passes 'check' loads in 'serve'.

    check   Validates DIR (default: the config's 'rules' directory, else ./rules).
            Prints one line per problem as FILE:LINE: KEY: MESSAGE and exits 1, or
            a summary (rules per stage, thresholds, list files) and exits 0.

    test    Runs MESSAGE.eml through every stage (connect, helo, mail, each
            recipient, data) as the gateway would, without sending anything, and
            prints each rule that fired with its score and stage, the total and the
            final action with the SMTP reply the client would get. With a config
            (--config, $MAILGATE_CONFIG, ./mailgate.yaml or /etc/mailgate/mailgate.yaml)
            the checks that need DNS
            run for real with its dns: servers: FCrDNS and DNSBL for --ip, SPF for
            --from/--helo, DKIM, ARC and DMARC on the message. Without a config, or
            with --offline, they are not computed: pass their results with --fact,
            e.g. --fact dmarc.result=fail --fact dmarc.policy=reject (--fact always
            wins over a computed fact). Rate limits and greylisting never run (they
            would count). A sidecar MESSAGE.json (keys ip, helo, from,
            to, tls, facts) is read when present; options override it. The rules
            that read facts which were not given are listed, so you know what the
            run could not see.

    diff    Replays recorded traffic against the rules in force (--rules, default
            as for check) and against NEW_DIR, and prints every message whose action
            would change, with the rules responsible. Input: the gateway's capture
            file (--capture, default capture.jsonl next to the quarantine
            directory, i.e. var/capture.jsonl), or --corpus DIR: every *.eml in
            DIR with its optional .json envelope sidecar.

OPTIONS
    --config FILE     mailgate.yaml to take defaults from (rules directory, host name
                      and domains, capture file). Default: $MAILGATE_CONFIG, else
                      ./mailgate.yaml, else /etc/mailgate/mailgate.yaml, when one exists.
    --rules DIR       Rules directory to use instead of the config's.
    --ip IP           Client address (default ${DEFAULT_TEST_IP}).
    --helo NAME       HELO/EHLO name (HELO facts are unset without it).
    --from ADDR       Envelope sender; '' for the null sender (default: the From header).
    --to ADDR         Envelope recipient, repeatable (default: To and Cc addresses).
    --tls             The session used TLS.
    --fact NAME=VALUE Set a fact. VALUE is JSON when it parses as JSON (true, 3,
                      ["a","b"]), else a string. Repeatable.
    --offline         test: do not run the DNS checks even when a config is given.
    --show-facts      Also print every fact the rules saw.
    --verbose         check: list every rule with its stage and source.
    --all             diff: print unchanged messages too.
    --json            Machine-readable output.
    -h, --help        This text.

EXIT STATUS
    check: 0 valid, 1 invalid. test: 0, or 1 on a usage or rules error.
    diff: 0 no action changes, 1 some action changes, 2 on errors (like diff(1)).

EXAMPLES
    mailgate rules check rules/
    mailgate rules test spam.eml --ip 203.0.113.9 --helo bot.example --to alice@example.com
    mailgate rules test msg.eml --fact dmarc.result=fail --fact dmarc.policy=reject
    cp -r rules rules.new && $EDITOR rules.new/local.d/50-mine.yaml
    mailgate rules diff rules.new/

SEE ALSO
    docs/rules.md (rules reference and a tuning walkthrough)
`;

class UsageError extends Error {}

function takeOpt(args: string[], ...names: string[]): string | undefined {
  for (const n of names) {
    const i = args.indexOf(n);
    if (i >= 0) {
      const v = args[i + 1];
      if (v === undefined) throw new UsageError(`${n} needs a value`);
      args.splice(i, 2);
      return v;
    }
  }
  return undefined;
}

function takeAll(args: string[], name: string): string[] {
  const out: string[] = [];
  for (let v = takeOpt(args, name); v !== undefined; v = takeOpt(args, name)) out.push(v);
  return out;
}

function takeFlag(args: string[], ...names: string[]): boolean {
  let found = false;
  for (const n of names) {
    for (let i = args.indexOf(n); i >= 0; i = args.indexOf(n)) {
      args.splice(i, 1);
      found = true;
    }
  }
  return found;
}

function noMoreOptions(args: string[]): void {
  const bad = args.find((a) => a.startsWith('-') && a !== '-');
  if (bad) throw new UsageError(`unknown option ${bad}`);
}

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** The config named by --config, else the default search ($MAILGATE_CONFIG, ./mailgate.yaml, /etc/mailgate/mailgate.yaml); none found = no config. */
function optionalConfig(explicit: string | undefined): LoadedConfig | undefined {
  let file: string;
  try {
    file = locateConfig(explicit);
  } catch (err) {
    if (err instanceof SourceErrors) return undefined;
    throw err;
  }
  return loadConfig(file);
}

function rulesDirOf(explicit: string | undefined, cfg: LoadedConfig | undefined): string {
  if (explicit) return explicit;
  if (cfg) return relative(process.cwd(), cfg.config.rules) || '.';
  return 'rules';
}

function load(dir: string): LoadedRules {
  return loadRules(dir, createFactLookup(knownFacts()), knownSections());
}

function parseFact(spec: string): [string, FactValue] {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new UsageError(`--fact expects NAME=VALUE, got ${JSON.stringify(spec)}`);
  const name = spec.slice(0, eq);
  const raw = spec.slice(eq + 1);
  let value: FactValue = raw;
  try {
    const v = JSON.parse(raw) as unknown;
    if (v === null || ['string', 'number', 'boolean'].includes(typeof v) || Array.isArray(v)) value = v as FactValue;
  } catch {
    value = raw;
  }
  return [name, value];
}

function pad(s: string, n: number): string {
  return s.length >= n ? `${s} ` : s + ' '.repeat(n - s.length);
}

// --- check -------------------------------------------------------------------------------------

function check(args: string[], io: Io): number {
  const cfgFile = takeOpt(args, '--config', '-c');
  const verbose = takeFlag(args, '--verbose', '-v');
  const json = takeFlag(args, '--json');
  noMoreOptions(args);
  if (args.length > 1) throw new UsageError(`check: unexpected argument ${args[1]}`);
  const dir = rulesDirOf(args[0], args[0] ? undefined : optionalConfig(cfgFile));
  const loaded = load(dir);
  const perStage = STAGES.map((s) => `${s} ${loaded.policy.rulesAt(s).length}`).join(', ');
  const th = loaded.policy.thresholds;
  const thresholds = [...th.actions.map((t) => `${t.action} ${formatScore(t.score)}`), ...(th.tag ? [`tag ${formatScore(th.tag.score)}`] : [])];
  if (json) {
    io.out(
      `${JSON.stringify({
        ok: true,
        dir,
        files: loaded.files.map((f) => relative(loaded.dir, f)),
        lists: loaded.listFiles.map((f) => relative(loaded.dir, f)),
        rules: loaded.rules.map((r) => ({ name: r.name, stage: r.stage, score: r.score, action: r.action ?? null, source: r.source })),
        disabled: loaded.disabled,
        thresholds: Object.fromEntries(th.actions.map((t) => [t.action, t.score])),
        sections: [...loaded.sections.keys()],
      })}\n`,
    );
    return 0;
  }
  io.out(`${dir}: OK: ${loaded.rules.length} rules in ${loaded.files.length} files, ${loaded.listFiles.length} list files\n`);
  io.out(`  by stage:   ${perStage}\n`);
  io.out(`  thresholds: ${thresholds.join(', ') || 'none (only rules with an action refuse mail)'}\n`);
  if (loaded.disabled.length) io.out(`  disabled:   ${loaded.disabled.join(', ')}\n`);
  if (loaded.sections.size) io.out(`  sections:   ${[...loaded.sections.keys()].join(', ')}\n`);
  if (verbose) {
    io.out('\n');
    for (const stage of STAGES) {
      for (const r of loaded.policy.rulesAt(stage)) {
        const eff = [r.score ? `score ${formatScore(r.score)}` : '', r.action ? `action ${r.action}` : ''].filter(Boolean).join(', ');
        io.out(`  ${pad(stage, 8)}${pad(r.name, 28)}${pad(eff, 24)}${r.source}\n`);
      }
    }
  }
  return 0;
}

// --- test --------------------------------------------------------------------------------------

function describeResult(r: OfflineResult): string {
  if (r.action === 'incomplete') return `not decided by stage ${r.stage} (the facts stop there)`;
  const reply = refusal(r.reply);
  return `${r.action} at ${r.stage}${reply ? `: ${reply}` : ''}`;
}

/** The reply text of a refusal (what the client reads), or "" for an acceptance. */
function refusal(r: SmtpReply | undefined): string {
  return r && !r.isOk ? r.toString() : '';
}

function replyJson(r: SmtpReply | undefined): { code: number; enhanced: string; text: string } | null {
  return r && !r.isOk ? { code: r.code, enhanced: r.enhanced, text: r.text } : null;
}

/** Facts some rule reads that the run did not have (what `rules test` could not see). */
function missingFacts(loaded: LoadedRules, facts: FactSet): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of loaded.rules) {
    for (const f of r.condition.facts) {
      if (f.startsWith('header.') || facts.has(f) || f === 'rcpt.address' || f === 'rcpt.domain') continue;
      out.set(f, [...(out.get(f) ?? []), r.name]);
    }
  }
  return out;
}

async function test(args: string[], io: Io): Promise<number> {
  const cfgFile = takeOpt(args, '--config', '-c');
  const rulesOpt = takeOpt(args, '--rules');
  const env: Envelope = {};
  const ip = takeOpt(args, '--ip');
  const helo = takeOpt(args, '--helo');
  const from = takeOpt(args, '--from');
  const to = takeAll(args, '--to');
  const factSpecs = takeAll(args, '--fact');
  const tls = takeFlag(args, '--tls');
  const showFacts = takeFlag(args, '--show-facts');
  const json = takeFlag(args, '--json');
  const offline = takeFlag(args, '--offline');
  noMoreOptions(args);
  const file = args[0];
  if (!file) throw new UsageError('test: which message? (mailgate rules test MESSAGE.eml)');
  if (args.length > 1) throw new UsageError(`test: unexpected argument ${args[1]}`);
  const cfg = optionalConfig(cfgFile);
  const dir = rulesDirOf(rulesOpt, cfg);
  const loaded = load(dir);
  const side = readSidecar(file) ?? {};
  Object.assign(env, side);
  if (ip !== undefined) env.ip = ip;
  if (helo !== undefined) env.helo = helo;
  if (from !== undefined) env.from = from;
  if (to.length) env.to = to;
  if (tls) env.tls = true;
  if (factSpecs.length) env.facts = { ...(side.facts ?? {}), ...Object.fromEntries(factSpecs.map(parseFact)) };
  const lookup = createFactLookup(knownFacts());
  const unknown = Object.keys(env.facts ?? {}).filter((f) => !lookup.get(f));
  if (unknown.length) throw new UsageError(`unknown fact${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (see docs/rules.md for the list)`);

  // With a config, the checks that need DNS run for real (with its dns: servers), as the gateway
  // would run them; --offline (or no config) runs only the checks that need nothing outside.
  const run = await offlineChecks(cfg?.config, loaded, cfg !== undefined && !offline);
  let result: OfflineResult;
  try {
    result = await runOffline({
      policy: loaded.policy,
      checks: run.checks,
      ...(cfg ? { config: cfg.config } : {}),
      envelope: env,
      message: readFileSync(file),
    });
  } finally {
    await run.close();
  }
  const msg = { facts: result.facts, envelope: result.envelope, size: result.size };
  const missing = missingFacts(loaded, msg.facts);
  const v = result.verdict;

  if (json) {
    io.out(
      `${JSON.stringify({
        message: file,
        envelope: msg.envelope,
        action: result.action,
        stage: result.stage,
        reply: replyJson(result.reply),
        score: v.score,
        required: v.required ?? null,
        decided_by: decidedBy(v),
        fired: v.fired,
        recipients: result.recipients,
        add_headers: v.addHeaders,
        tag_subject: v.tagSubject ?? null,
        missing_facts: Object.fromEntries(missing),
        ...(showFacts ? { facts: msg.facts.toJSON() } : {}),
      })}\n`,
    );
    return 0;
  }
  const e = msg.envelope;
  io.out(`Message:  ${file} (${msg.size} bytes)\n`);
  io.out(
    `Envelope: client ${e.ip}${e.helo ? ` helo ${e.helo}` : ''}${e.tls ? ' tls' : ''}, from <${e.from}> to ${(e.to ?? []).map((t) => `<${t}>`).join(' ') || '(none)'}\n`,
  );
  io.out(`Rules:    ${dir} (${loaded.rules.length} rules, ${loaded.files.length} files)\n\n`);
  if (v.fired.length === 0) io.out('No rule fired.\n');
  else {
    io.out(`${pad('STAGE', 9)}${pad('RULE', 30)}${pad('SCORE', 8)}${pad('ACTION', 12)}SOURCE\n`);
    for (const f of v.fired) {
      io.out(
        `${pad(f.stage, 9)}${pad(f.rule, 30)}${pad(f.score ? formatFired(f).replace(/^.*\((.*)\)$/, '$1') : '', 8)}${pad(f.action ?? '', 12)}${f.source ?? ''}\n`,
      );
    }
  }
  const refusedRcpts = result.recipients.filter((r) => r.action === 'reject' || r.action === 'tempfail');
  if (refusedRcpts.length && result.stage !== 'rcpt') {
    for (const r of refusedRcpts) {
      io.out(`rcpt     <${r.address}> refused: ${r.reply.toString()}\n`);
    }
  }
  io.out(`\nResult:   ${describeResult(result)}\n`);
  io.out(
    `          score ${formatScore(v.score)}${v.required !== undefined ? ` (reject threshold ${formatScore(v.required)})` : ''}, decided by ${decidedBy(v)}\n`,
  );
  if (result.action === 'accept' || result.action === 'quarantine') {
    const headers = v.addHeaders.length ? v.addHeaders : [{ name: 'X-Mailgate-Status', value: statusHeaderValue(v) }];
    for (const h of headers) io.out(`Header:   ${h.name}: ${h.value}\n`);
    if (v.tagSubject) io.out(`Subject:  tagged "${v.tagSubject}"\n`);
  }
  if (missing.size) {
    const nRules = new Set([...missing.values()].flat()).size;
    io.out(
      `\nFacts ${nRules} rule${nRules === 1 ? '' : 's'} read but this run did not have (set them with --fact NAME=VALUE${showFacts ? '' : '; --show-facts says which rules'}):\n`,
    );
    if (showFacts) for (const [f, rules] of [...missing].sort()) io.out(`  ${pad(f, 26)}read by ${rules.join(', ')}\n`);
    else io.out(wrap([...missing.keys()].sort().join(', '), 96, '  '));
  }
  if (showFacts) {
    io.out('\nFacts:\n');
    for (const [k, val] of [...msg.facts.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      const s = JSON.stringify(val);
      io.out(`  ${pad(k, 26)}${s.length > 200 ? `${s.slice(0, 197)}...` : s}\n`);
    }
  }
  return 0;
}

function wrap(text: string, width: number, indent: string): string {
  let out = '';
  let line = indent;
  for (const word of text.split(' ')) {
    if (line.length + word.length > width && line.trim()) {
      out += `${line.trimEnd()}\n`;
      line = indent;
    }
    line += `${word} `;
  }
  return `${out}${line.trimEnd()}\n`;
}

// --- diff --------------------------------------------------------------------------------------

interface ReplayInput {
  label: string;
  envelope: Envelope;
  message?: Buffer;
  lastStage?: (typeof STAGES)[number];
}

async function corpusInputs(dir: string): Promise<ReplayInput[]> {
  const out: ReplayInput[] = [];
  for (const name of readdirSync(dir)
    .filter((n) => n.toLowerCase().endsWith('.eml'))
    .sort()) {
    const path = join(dir, name);
    if (!statSync(path).isFile()) continue;
    out.push({ label: name, envelope: readSidecar(path) ?? {}, message: readFileSync(path) });
  }
  return out;
}

function captureInputs(file: string, io: Io): ReplayInput[] {
  if (!captureFiles(file).some((f) => existsSync(f) || existsSync(`${f}.1`))) {
    throw new UsageError(`no capture at ${file} (is the gateway running with capture on? or use --corpus DIR)`);
  }
  const { entries, skipped } = readCapture(file);
  if (skipped) io.err(`mailgate: ${skipped} unreadable capture lines skipped\n`);
  return entries.map((e) => {
    const f = e.facts;
    const rc = Array.isArray(f['rcpt.addresses']) ? (f['rcpt.addresses'] as string[]).join(',') : '';
    // A captured transaction is replayed from its facts: they override what the (absent) message would give.
    const str = (k: string) => (typeof f[k] === 'string' ? (f[k] as string) : undefined);
    const envelope: Envelope = {
      facts: f,
      ip: str('client.ip') ?? DEFAULT_TEST_IP,
      from: str('mail.from') ?? '',
      to: Array.isArray(f['rcpt.addresses']) ? (f['rcpt.addresses'] as string[]) : str('rcpt.address') ? [str('rcpt.address') as string] : [],
    };
    const helo = str('helo.name');
    if (helo !== undefined) envelope.helo = helo;
    if (f.tls === true) envelope.tls = true;
    // rcpt.addresses is set when DATA starts: such a capture covers the whole transaction.
    const lastStage =
      'rcpt.addresses' in f || Object.keys(f).some((k) => k.startsWith('message.'))
        ? 'data'
        : 'rcpt.address' in f
          ? 'rcpt'
          : 'mail.from' in f
            ? 'mail'
            : 'helo.name' in f
              ? 'helo'
              : 'connect';
    return { label: `${e.time} ${e.id ?? ''} <${String(f['mail.from'] ?? '')}> -> ${rc}`.replace(/\s+/g, ' '), envelope, lastStage };
  });
}

function ruleDelta(a: Verdict, b: Verdict): string[] {
  const key = (f: { rule: string; stage: string }) => `${f.stage}:${f.rule}`;
  const before = new Map(a.fired.map((f) => [key(f), f]));
  const after = new Map(b.fired.map((f) => [key(f), f]));
  const out: string[] = [];
  for (const [k, f] of after) {
    const old = before.get(k);
    if (!old) out.push(`+${formatFired(f, true)}`);
    else if (old.score !== f.score) out.push(`~${f.rule}(${formatScore(old.score)}→${formatScore(f.score)})`);
  }
  for (const [k, f] of before) if (!after.has(k)) out.push(`-${formatFired(f, true)}`);
  return out;
}

async function diff(args: string[], io: Io): Promise<number> {
  const cfgFile = takeOpt(args, '--config', '-c');
  const rulesOpt = takeOpt(args, '--rules');
  const captureOpt = takeOpt(args, '--capture');
  const corpus = takeOpt(args, '--corpus');
  const all = takeFlag(args, '--all');
  const json = takeFlag(args, '--json');
  noMoreOptions(args);
  const newDir = args[0];
  if (!newDir) throw new UsageError('diff: which rules directory to compare? (mailgate rules diff NEW_DIR)');
  if (args.length > 1) throw new UsageError(`diff: unexpected argument ${args[1]}`);
  if (corpus && captureOpt) throw new UsageError('diff: give --capture or --corpus, not both');
  const cfg = optionalConfig(cfgFile);
  const oldDir = rulesDirOf(rulesOpt, cfg);
  const oldRules = load(oldDir);
  const newRules = load(newDir);
  const captureFile = captureOpt ?? (cfg ? join(dirname(cfg.config.quarantine.dir), 'capture.jsonl') : 'var/capture.jsonl');
  const inputs = corpus ? await corpusInputs(corpus) : captureInputs(captureFile, io);

  const transitions = new Map<string, number>();
  const rows: Array<Record<string, unknown>> = [];
  let changed = 0;
  for (const input of inputs) {
    const sim = async (p: LoadedRules) => {
      const run = await offlineChecks(undefined, p, false);
      try {
        return await runOffline({
          policy: p.policy,
          checks: input.message ? run.checks : [],
          ...(cfg ? { config: cfg.config } : {}),
          envelope: input.envelope,
          ...(input.message ? { message: input.message } : {}),
          ...(input.lastStage ? { lastStage: input.lastStage } : {}),
        });
      } finally {
        await run.close();
      }
    };
    const a = await sim(oldRules);
    const b = await sim(newRules);
    const differs = a.action !== b.action || a.stage !== b.stage || a.reply?.code !== b.reply?.code;
    if (differs) {
      changed++;
      const t = `${a.action}→${b.action}`;
      transitions.set(t, (transitions.get(t) ?? 0) + 1);
    }
    if (!differs && !all) continue;
    const delta = ruleDelta(a.verdict, b.verdict);
    if (json) {
      rows.push({
        message: input.label,
        changed: differs,
        before: { action: a.action, stage: a.stage, score: a.verdict.score, decided_by: decidedBy(a.verdict), reply: replyJson(a.reply) },
        after: { action: b.action, stage: b.stage, score: b.verdict.score, decided_by: decidedBy(b.verdict), reply: replyJson(b.reply) },
        rules: delta,
      });
      continue;
    }
    io.out(`${input.label}\n`);
    io.out(
      `    ${differs ? '' : '(unchanged) '}${a.action}@${a.stage} → ${b.action}@${b.stage}   score ${formatScore(a.verdict.score)} → ${formatScore(b.verdict.score)}\n`,
    );
    io.out(`    now decided by ${decidedBy(b.verdict)}${differs ? ` (was ${decidedBy(a.verdict)})` : ''}\n`);
    if (delta.length) io.out(`    rules: ${delta.join(' ')}\n`);
    if (differs && refusal(b.reply)) io.out(`    reply: ${refusal(b.reply)}\n`);
  }
  if (json) {
    io.out(`${JSON.stringify({ old: oldDir, new: newDir, replayed: inputs.length, changed, transitions: Object.fromEntries(transitions), messages: rows })}\n`);
  } else {
    const summary = [...transitions].map(([t, n]) => `${t} ${n}`).join(', ');
    io.out(
      `${inputs.length ? '\n' : ''}Replayed ${inputs.length} message${inputs.length === 1 ? '' : 's'} from ${corpus ? `corpus ${corpus}` : captureFile} against ${oldDir} and ${newDir}: ${changed} would change${summary ? ` (${summary})` : ''}.\n`,
    );
  }
  return changed > 0 ? 1 : 0;
}

// --- dispatch ----------------------------------------------------------------------------------

function processIo(): Io {
  // `mailgate rules test x.eml | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  return { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s) };
}

export async function runRulesCommand(argv: string[], io: Io = processIo()): Promise<number> {
  const args = [...argv];
  const sub = args.shift();
  try {
    if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help' || takeFlag(args, '-h', '--help')) {
      io.out(HELP);
      return 0;
    }
    switch (sub) {
      case 'check':
        return check(args, io);
      case 'test':
        return await test(args, io);
      case 'diff':
        return await diff(args, io);
      default:
        throw new UsageError(`unknown subcommand ${sub} (expected check, test or diff)`);
    }
  } catch (err) {
    if (err instanceof SourceErrors) {
      io.err(`${err.message}\n`);
      return sub === 'diff' ? 2 : 1;
    }
    if (err instanceof UsageError) {
      io.err(`mailgate rules: ${err.message}\nTry 'mailgate rules --help'.\n`);
      return sub === 'diff' ? 2 : 1;
    }
    io.err(`mailgate rules: ${(err as Error).message}\n`);
    return sub === 'diff' ? 2 : 1;
  }
}
