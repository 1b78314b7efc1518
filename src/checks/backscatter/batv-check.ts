// The BATV check at RCPT: verifies prvs= tags on bounce recipients against the configured keys,
// records the result as facts per the recipient domain's mode (off | tag-only | strict), and asks
// for the tag to be stripped (an envelope edit) so the backend sees the plain address.
import type { Check, CheckInput, CheckOutput } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import { BATV_MODES, type BackscatterConfig, type BatvMode } from '../../config/backscatter-schema.ts';
import { batvVerify, type BatvKeyring } from './batv.ts';
import { countBackscatter } from './backscatter-metrics.ts';

export const BATV_RESULTS = ['none', 'valid', 'missing', 'invalid', 'expired'] as const;
export type BatvResult = (typeof BATV_RESULTS)[number];

export const batvFacts: readonly FactSpec[] = [
  {
    name: 'batv.result',
    stage: 'rcpt',
    type: 'string',
    log: true,
    values: BATV_RESULTS,
    description:
      'BATV verdict for the recipient being checked: valid (a good prvs= tag), missing (a bounce to an untagged address), invalid (forged or damaged tag), expired, none (not judged: mode off, or not a bounce)',
  },
  {
    name: 'batv.mode',
    stage: 'rcpt',
    type: 'string',
    values: BATV_MODES,
    description: "BATV mode of the recipient's domain (backscatter.mode / backscatter.domains)",
  },
  {
    name: 'batv.reject',
    stage: 'rcpt',
    type: 'boolean',
    description: 'strict mode and a bounce without a valid tag: the shipped policy refuses the recipient (550 5.7.1)',
  },
  { name: 'batv.text', stage: 'rcpt', type: 'string', description: 'Why the bounce fails BATV, in words, for the reply text ("" when it does not)' },
];

/** What the check keeps per connection, so the DATA-stage check knows every recipient's result. */
export const BATV_NOTE = 'backscatter:batv';
export interface BatvNote {
  /** mail.transaction the results belong to. */
  tx: number;
  results: BatvResult[];
}

export interface BatvCheckSettings {
  /** The `backscatter:` config in force (read at every run, so a reload applies at once). */
  config: () => BackscatterConfig;
  now: () => number;
}

/** The keyring of a config; undefined when no keys are configured. */
export function keyringOf(cfg: BackscatterConfig): BatvKeyring | undefined {
  const first = cfg.batv.keys[0];
  if (!first) return undefined;
  return { keys: cfg.batv.keys, signId: cfg.batv.sign_key ?? first.id, maxAgeDays: cfg.batv.max_age_days };
}

export function modeFor(cfg: BackscatterConfig, domain: string): BatvMode {
  return cfg.domains[domain.toLowerCase()] ?? cfg.mode;
}

function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at === -1 ? '' : address.slice(at + 1).toLowerCase();
}

function textFor(result: BatvResult, plain: string): string {
  // Kept under the 200 characters a reply template carries.
  switch (result) {
    case 'missing':
      return `Bounce refused: <${plain}> signs all its mail (BATV), this bounce is for mail it never sent (backscatter)`;
    case 'invalid':
      return `Bounce refused: the BATV tag on <${plain}> is not valid (forged or damaged); backscatter`;
    case 'expired':
      return `Bounce refused: the BATV tag on <${plain}> has expired; backscatter`;
    default:
      return '';
  }
}

export function createBatvCheck(settings: BatvCheckSettings): Check {
  return {
    name: 'batv',
    // Pure: verifies the tag with the configured keys (no lookups, no counting), so rules test runs it.
    effects: 'none',
    stages: ['rcpt'],
    facts: batvFacts,
    timeoutMs: 1000,
    // Pure computation; a throw is a bug, and a bug must not let forged bounces through silently.
    onFailure: 'tempfail',
    run(input: CheckInput, out: CheckOutput) {
      const cfg = settings.config();
      const rcpt = input.recipient ?? '';
      const nullSender = input.facts.get('mail.null_sender') === true || input.facts.get('mail.from') === '';
      const ring = keyringOf(cfg);
      const v = ring ? batvVerify(rcpt, ring, settings.now()) : { status: 'untagged' as const, plain: rcpt };
      const mode = modeFor(cfg, domainOf(v.plain));
      let result: BatvResult = 'none';
      if (v.status === 'valid') {
        // A good tag is stripped in every mode (also for a reply to the tagged return path), so
        // the backend sees — and answers for — the plain address.
        out.edits.rcptRewrites.set(rcpt, v.plain);
        result = 'valid';
      } else if (nullSender && mode !== 'off') {
        result = v.status === 'untagged' ? 'missing' : v.status === 'expired' ? 'expired' : 'invalid';
      }
      const reject = mode === 'strict' && result !== 'none' && result !== 'valid';
      out.facts.set('batv.result', result);
      out.facts.set('batv.mode', mode);
      out.facts.set('batv.reject', reject);
      out.facts.set('batv.text', textFor(result, v.plain));
      if (result !== 'none') countBackscatter(`batv-${result}`);
      // Accumulate per transaction: the DATA check sees all recipients, not just the last one.
      const tx = Number(input.facts.get('mail.transaction') ?? 0);
      const prev = input.connection.notes.get(BATV_NOTE) as BatvNote | undefined;
      const note: BatvNote = prev && prev.tx === tx ? prev : { tx, results: [] };
      if (!reject) note.results.push(result);
      input.connection.notes.set(BATV_NOTE, note);
    },
    disconnect(connection) {
      connection.notes.delete(BATV_NOTE);
    },
  };
}
