// The quarantine is full: the message cannot be held, and must not be silently dropped. Thrown
// by put(); it carries the SMTP reply so the session's ordinary SmtpError path answers with it.
import { SmtpError, replies } from '../../pipeline/reply.ts';

export class QuarantineFullError extends SmtpError {
  readonly outcome: 'tempfail' | 'reject';
  constructor(outcome: 'tempfail' | 'reject', detail: string) {
    // RFC 3463 4.3.1 / 5.3.4: mail system full / message too big for system.
    super(outcome === 'tempfail' ? replies.quarantineFull() : replies.quarantineFullReject());
    this.outcome = outcome;
    this.message = `quarantine full (${detail})`;
  }
}
