// The body facts rules match with regexes: decoded text and HTML of the message, from the shared
// MIME walk (body-text-walk.ts computes them, only when some rule reads them), cut to
// settings.body_max_bytes so a 50 MB attachment costs nothing.
import type { FactSpec } from '../../pipeline/facts.ts';

export const bodyFacts: readonly FactSpec[] = [
  {
    name: 'message.body_text',
    stage: 'data',
    type: 'string',
    description: 'Body text: the text/plain parts decoded (or, without one, the HTML parts as text), cut to settings.body_max_bytes',
  },
  { name: 'message.body_html', stage: 'data', type: 'string', description: 'The text/html parts decoded, cut to settings.body_max_bytes ("" when none)' },
  {
    name: 'message.body_truncated',
    stage: 'data',
    type: 'boolean',
    description: 'The body facts do not cover the whole message (longer than body_scan_bytes or body_max_bytes)',
  },
];
