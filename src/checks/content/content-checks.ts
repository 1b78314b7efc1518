// The content checks in their order, built from mailgate.yaml's `content:` section, and every
// fact they can set (for the rules registry). What the catalogue (src/checks/index.ts) adds.
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import type { ContentConfig } from '../../config/content-schema.ts';
import { createMimeWalkCheck, mimeFacts } from './mime-walk-check.ts';
import { createAttachmentsCheck, attachmentFacts } from './attachments.ts';
import { createAvCheck, avFacts } from './av-check.ts';
import { createUrlCheck, urlFacts } from './url-check.ts';
import { createRspamdCheck, rspamdFacts } from './rspamd-check.ts';
import { createSpamassassinCheck, spamassassinFacts } from './spamd-check.ts';
import { createHttpHookCheck } from './http-hook-check.ts';
import { walkLimitsFrom } from './walk-result.ts';
import type { Deps } from '../../pipeline/deps.ts';
import type { ArchiveLimits } from './archive-inspect.ts';

/** Every fact of the content checks (the scanners' facts are declared even when they are off). */
export const contentFacts: readonly FactSpec[] = [...mimeFacts, ...attachmentFacts, ...urlFacts, ...avFacts, ...rspamdFacts, ...spamassassinFacts];

export function archiveLimitsFrom(a: ContentConfig['archives']): ArchiveLimits {
  return { maxDepth: a.max_depth, maxEntries: a.max_entries, maxMemberBytes: a.max_member_bytes, maxTotalBytes: a.max_total_bytes, maxRatio: a.max_ratio };
}

/**
 * A check that only declares facts of a scanner that is switched off, so the shipped rules that
 * read them load (and never fire) whatever is configured. Redundant once the registry lists
 * contentFacts.
 */
function declaredOnly(name: string, facts: readonly FactSpec[]): Check {
  // Runs at no stage: its facts are declared so shipped rules validate, nothing is computed.
  return { name, stages: [], facts, effects: 'none', run() {} };
}

/** mime-walk, attachments and urls always; the scanners when enabled. `deps.dns` for URI blocklists. */
export function createContentChecks(content: ContentConfig, deps: Partial<Pick<Deps, 'dns'>> = {}): Check[] {
  const walk = walkLimitsFrom(content.mime);
  const checks: Check[] = [
    createMimeWalkCheck(walk),
    createAttachmentsCheck(walk, archiveLimitsFrom(content.archives)),
    createUrlCheck({ settings: content.urls, walkLimits: walk, ...(deps.dns ? { deps: { dns: deps.dns } } : {}) }),
  ];
  checks.push(content.clamav.enabled ? createAvCheck({ config: content.clamav, walkLimits: walk }) : declaredOnly('antivirus', avFacts));
  checks.push(content.rspamd.enabled ? createRspamdCheck(content.rspamd) : declaredOnly('rspamd', rspamdFacts));
  checks.push(content.spamassassin.enabled ? createSpamassassinCheck(content.spamassassin) : declaredOnly('spamassassin', spamassassinFacts));
  for (const h of content.hooks) checks.push(createHttpHookCheck(h));
  return checks;
}
