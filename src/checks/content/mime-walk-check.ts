// The `mime-walk` check: runs the message's one MIME walk at end of DATA and turns its outline
// into mime.* facts (parts, depth, types, and why the MIME is malformed). Other content checks
// read the structured walk through walkOf() and declare `needs: ['mime.*']`.
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import { MALFORMED_REASONS, type WalkLimits } from '../../message/mime-walk.ts';
import { walkOf } from './walk-result.ts';

export const mimeFacts: readonly FactSpec[] = [
  {
    name: 'mime.malformed',
    stage: 'data',
    type: 'boolean',
    description: 'The MIME structure is broken or hit a walk limit (see mime.malformed_reasons): what mail clients show may differ from what was inspected',
  },
  {
    name: 'mime.malformed_reasons',
    stage: 'data',
    type: 'string[]',
    description: `Why mime.malformed: ${MALFORMED_REASONS.join(', ')}`,
    values: MALFORMED_REASONS,
  },
  { name: 'mime.parts', stage: 'data', type: 'number', description: 'MIME parts seen (containers and leaves, nested messages included)' },
  { name: 'mime.depth', stage: 'data', type: 'number', description: 'Deepest nesting level (0: a single-part message)' },
  { name: 'mime.content_types', stage: 'data', type: 'string[]', description: 'Every declared Content-Type, in order, without duplicates' },
  { name: 'mime.complete', stage: 'data', type: 'boolean', description: 'The walk saw the whole message (no part, size or parse limit stopped it)' },
];

/** Reasons after which parts may have gone unseen. */
const INCOMPLETE: readonly string[] = ['header-too-big', 'too-many-parts', 'too-deep', 'decoded-limit', 'parse-error'];

export function createMimeWalkCheck(limits?: WalkLimits): Check {
  return {
    name: 'mime-walk',
    effects: 'none',
    stages: ['data'],
    facts: mimeFacts,
    timeoutMs: 20_000,
    // A walk that cannot finish must not pass the message unscanned.
    onFailure: 'tempfail',
    async run(input, out) {
      if (!input.message) return;
      const w = await walkOf(input.message, limits);
      out.facts.set('mime.malformed', w.malformed.length > 0);
      out.facts.set('mime.malformed_reasons', [...w.malformed]);
      out.facts.set('mime.parts', w.partCount);
      out.facts.set('mime.depth', w.depth);
      out.facts.set('mime.content_types', [...w.contentTypes]);
      out.facts.set('mime.complete', !w.malformed.some((r) => INCOMPLETE.includes(r)));
    },
  };
}
