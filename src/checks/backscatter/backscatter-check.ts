// The backscatter check at end of DATA: parses bounces and auto-replies (dsn-parse.ts) and records
// the heuristics that tell a forged bounce from a genuine one as facts for the rules, plus one
// `backscatter.reason` saying what decided, for the log line and the metric.
import type { Check, CheckInput, CheckOutput } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import type { BackscatterConfig } from '../../config/backscatter-schema.ts';
import { NO_ESCALATION, type RateLimitRequest, type RateLimitResult, type SharedStore } from '../../store/shared-store.ts';
import { MemoryBackend } from '../../store/memory-store.ts';
import { DSN_KINDS, parseDsn, readCapped, type DsnInfo, type DsnLimits } from './dsn-parse.ts';
import { batvVerify } from './batv.ts';
import { BATV_NOTE, keyringOf, type BatvNote } from './batv-check.ts';
import { countBackscatter, type BackscatterResult } from './backscatter-metrics.ts';
import type { OutboundRecord, SeenResult } from './outbound-record.ts';

export const BACKSCATTER_REASONS = [
  'not-dsn',
  'batv-valid',
  'recorded-outbound',
  'our-dkim',
  'batv-missing',
  'batv-invalid',
  'batv-expired',
  'multi-rcpt',
  'foreign-msgid',
  'unsigned-original',
  'bounce-rate',
  'no-evidence',
] as const;
export type BackscatterReason = (typeof BACKSCATTER_REASONS)[number];

export const backscatterFacts: readonly FactSpec[] = [
  {
    name: 'backscatter.kind',
    stage: 'data',
    type: 'string',
    values: DSN_KINDS,
    description: 'What kind of bounce or automatic reply the message is (none for ordinary mail)',
  },
  {
    name: 'backscatter.is_dsn',
    stage: 'data',
    type: 'boolean',
    description: 'The message is a bounce (DSN/NDR), an auto-reply or a challenge (backscatter.kind is not none)',
  },
  {
    name: 'backscatter.original_message_id',
    stage: 'data',
    type: 'string',
    description: 'Message-ID of the returned original (or In-Reply-To of an auto-reply), "" if none',
  },
  { name: 'backscatter.original_from', stage: 'data', type: 'string', description: 'Address in the From of the returned original, "" if none' },
  { name: 'backscatter.original_dkim', stage: 'data', type: 'string[]', description: 'd= domains of the DKIM-Signatures of the returned original' },
  {
    name: 'backscatter.genuine',
    stage: 'data',
    type: 'boolean',
    description: 'Proof the bounce answers mail we sent: valid BATV tags, a recorded outbound Message-ID, or our DKIM signature',
  },
  { name: 'backscatter.multi_rcpt', stage: 'data', type: 'boolean', description: 'A null-sender message to more than one recipient (a real bounce has one)' },
  {
    name: 'backscatter.foreign_msgid',
    stage: 'data',
    type: 'boolean',
    description: 'A bounce or auto-reply whose returned original has a Message-ID neither from our domains nor recorded by the outbound listener',
  },
  {
    name: 'backscatter.unsigned_original',
    stage: 'data',
    type: 'boolean',
    description: 'A bounce whose returned original has no DKIM signature of our domains, while our outbound mail is signed (backscatter.outbound_signed)',
  },
  {
    name: 'backscatter.bounce_rate_exceeded',
    stage: 'data',
    type: 'boolean',
    description: 'More bounces than backscatter.bounce_rate for a recipient of this message',
  },
  {
    name: 'backscatter.reason',
    stage: 'data',
    type: 'string',
    log: true,
    values: BACKSCATTER_REASONS,
    description: 'What decided: the first proof of a genuine bounce, else the first heuristic that fired (not-dsn, no-evidence when nothing did)',
  },
];

export interface BackscatterCheckSettings {
  config: () => BackscatterConfig;
  /** Our domains (mailgate.yaml `domains`), lower-case. */
  domains: () => ReadonlySet<string>;
  record: OutboundRecord;
  /** The MIME walk's structural limits (content.mime), which the DSN parser also applies. */
  walkLimits?: () => DsnLimits;
  /** For the bounce-rate limit; default an in-process table. */
  store?: SharedStore | undefined;
  now: () => number;
}

function endsWithDomain(host: string, domains: Iterable<string>): boolean {
  const h = host.toLowerCase();
  for (const d of domains) if (h === d || h.endsWith('.' + d)) return true;
  return false;
}

/** The right-hand side of a Message-ID (after the last @), lower-cased. */
function idDomain(id: string): string {
  const at = id.lastIndexOf('@');
  return at === -1 ? '' : id.slice(at + 1).toLowerCase();
}

function isAutomatic(headers: ReadonlyArray<{ name: string }>): boolean {
  return headers.some((h) => {
    const n = h.name.toLowerCase();
    return n === 'auto-submitted' || n === 'x-autoreply' || n === 'x-autorespond';
  });
}

export function createBackscatterCheck(settings: BackscatterCheckSettings): Check & { readonly record: OutboundRecord } {
  const local = settings.store ? undefined : new MemoryBackend({ maxKeys: 100_000 });
  const rateLimit = (reqs: RateLimitRequest[], now: number): Promise<RateLimitResult[]> =>
    settings.store ? settings.store.rateLimit(reqs, now).then((r) => r.results) : (local as MemoryBackend).rateLimit(reqs, now);
  const key = (...p: string[]) => (settings.store ? settings.store.key(...p) : p.join(':'));

  async function run(input: CheckInput, out: CheckOutput): Promise<void> {
    const cfg = settings.config();
    const f = input.facts;
    const set = out.facts.set.bind(out.facts);
    const nullSender = f.get('mail.null_sender') === true || f.get('mail.from') === '';
    const rcpts = (f.get('rcpt.addresses') as readonly string[] | undefined) ?? [];
    let info: DsnInfo = { kind: 'none', isBounce: false, truncated: false };
    if (input.message && (nullSender || isAutomatic(input.message.headers))) {
      const { bytes, truncated } = await readCapped(input.message.stream());
      info = parseDsn(bytes, truncated, settings.walkLimits?.() ?? {});
    }
    const orig = info.original;
    const isDsn = info.kind !== 'none';
    set('backscatter.kind', info.kind);
    set('backscatter.is_dsn', isDsn);
    set('backscatter.original_message_id', orig?.messageId ?? '');
    set('backscatter.original_from', orig?.from ?? '');
    set('backscatter.original_dkim', orig?.dkimDomains ?? []);

    const ours = settings.domains();
    const dkimOurs = cfg.dkim_domains ?? [...ours];
    // Proofs that the bounce answers our own mail.
    const note = input.connection.notes.get(BATV_NOTE) as BatvNote | undefined;
    const batvResults = note && note.tx === Number(f.get('mail.transaction') ?? 0) ? note.results : [];
    const batvValid = batvResults.length > 0 && batvResults.every((r) => r === 'valid');
    let seen: SeenResult = 'unseen';
    if (isDsn && orig?.messageId) seen = await settings.record.seen(orig.messageId, settings.now());
    const ourDkim = (orig?.dkimDomains ?? []).some((d) => endsWithDomain(d, dkimOurs));
    const genuine = isDsn && (batvValid || seen === 'seen' || ourDkim);

    // Heuristics, only where there is no proof.
    const multiRcpt = nullSender && rcpts.length > 1 && !genuine;
    const foreignMsgid =
      isDsn && !genuine && seen !== 'unavailable' && orig !== undefined && orig.messageId !== '' && !endsWithDomain(idDomain(orig.messageId), ours);
    const unsignedOriginal = cfg.outbound_signed && info.isBounce && !genuine && orig !== undefined && orig.source !== 'in-reply-to';
    let rateExceeded = false;
    if (nullSender && rcpts.length > 0) {
      const ring = keyringOf(cfg);
      const now = settings.now();
      const reqs: RateLimitRequest[] = rcpts.slice(0, 100).map((r) => ({
        key: key('bs', 'bounce', ring ? batvVerify(r, ring, now).plain : r),
        rate: cfg.bounce_rate,
        burst: cfg.bounce_rate.count,
        cost: 1,
        escalation: NO_ESCALATION,
        independent: true,
      }));
      try {
        const results = await rateLimit(reqs, now);
        rateExceeded = !genuine && results.some((r) => !r.allowed);
      } catch {
        // Store down with fail_closed: a rate we cannot know is no evidence either way.
      }
    }
    set('backscatter.genuine', genuine);
    set('backscatter.multi_rcpt', multiRcpt);
    set('backscatter.foreign_msgid', foreignMsgid);
    set('backscatter.unsigned_original', unsignedOriginal);
    set('backscatter.bounce_rate_exceeded', rateExceeded);

    let reason: BackscatterReason = 'not-dsn';
    const batvBad = batvResults.find((r) => r === 'missing' || r === 'invalid' || r === 'expired');
    if (!isDsn && !nullSender) reason = 'not-dsn';
    else if (batvValid) reason = 'batv-valid';
    else if (seen === 'seen') reason = 'recorded-outbound';
    else if (ourDkim && isDsn) reason = 'our-dkim';
    else if (batvBad) reason = `batv-${batvBad}`;
    else if (multiRcpt) reason = 'multi-rcpt';
    else if (foreignMsgid) reason = 'foreign-msgid';
    else if (unsignedOriginal) reason = 'unsigned-original';
    else if (rateExceeded) reason = 'bounce-rate';
    else if (isDsn || nullSender) reason = 'no-evidence';
    set('backscatter.reason', reason);
    // BATV results were counted per recipient at RCPT; count the message's decision here.
    if (reason !== 'not-dsn' && !reason.startsWith('batv-')) countBackscatter(reason as BackscatterResult);
  }

  return {
    name: 'backscatter',
    stages: ['data'],
    facts: backscatterFacts,
    needs: ['batv.result'],
    timeoutMs: 5000,
    // A parser or store fault must not stop legitimate mail: the facts are then simply absent.
    onFailure: 'continue',
    record: settings.record,
    run,
  };
}
