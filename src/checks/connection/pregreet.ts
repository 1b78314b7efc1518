// The early-talker fact: a client that sends commands before the 220 greeting is a bot that does
// not wait for the server (Postfix postscreen's pregreet test). The SMTP front measures it during
// `smtp.banner_delay_ms`; this file only declares the fact for rules.
import type { FactSpec } from '../../pipeline/facts.ts';

export const pregreetFacts: readonly FactSpec[] = [
  {
    name: 'client.pregreet',
    stage: 'connect',
    type: 'boolean',
    description: 'Client sent data before the greeting (only measured when smtp.banner_delay_ms > 0; absent otherwise)',
  },
];
