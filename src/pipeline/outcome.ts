// The one mapper from a decision to a reply: a stage's verdict (or a failed check) becomes the
// reply the front sends — SMTP as is, milter as SMFIR_REPLYCODE. Rules only say what they want to
// override (code, enhanced code, text); every default comes from the catalogue in reply.ts.
import { SmtpReply, replies } from './reply.ts';
import type { Stage } from './stages.ts';
import type { Verdict } from './verdict.ts';
import type { StageResult } from './runner.ts';

/** The reply for a stage result that stops the stage (failed check, reject, tempfail), else undefined. */
export function refusalFor(stage: Stage, res: StageResult): SmtpReply | undefined {
  if (res.failure) return res.failure.outcome === 'reject' ? replies.checkFailedReject(res.failure.check) : replies.checkFailed(res.failure.check);
  return verdictRefusal(stage, res.verdict);
}

export function verdictRefusal(stage: Stage, v: Verdict): SmtpReply | undefined {
  if (v.action !== 'reject' && v.action !== 'tempfail') return undefined;
  const dflt = v.action === 'reject' ? replies.policyRejected(stage) : replies.policyTempfailed(stage);
  const r = v.reply;
  if (!r) return dflt;
  const code = r.code ?? dflt.code;
  // A rule that changes only the basic code keeps the default's detail (5.7.1 → 4.7.1).
  const enhanced = r.enhanced ?? `${String(code)[0]}${dflt.enhanced.slice(1)}`;
  return new SmtpReply(code, enhanced, r.text ?? dflt.text);
}
