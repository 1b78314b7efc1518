// Quota through SMTP: once the quarantine is full, the next message the rules quarantine gets
// 452 4.3.1 (tempfail: the sender retries; never accepted and dropped), and nothing is stored.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startQuarantineEnv, type QuarantineEnv } from '../helpers/quarantine-env.ts';
import { quarantineMetrics } from '../../src/delivery/quarantine/quarantine-metrics.ts';

let env: QuarantineEnv;
before(async () => {
  env = await startQuarantineEnv({ quarantine: { quota: { max_messages: 1 } } });
});
after(() => env?.close());

test('quota reached: 452 4.3.1 to the client, nothing stored, refused_quota counted', async () => {
  const refusedBefore = (await quarantineMetrics.actions.get()).values.find((v) => v.labels.action === 'refused_quota')?.value ?? 0;
  const first = await env.quarantine();
  assert.equal(first.code, 250);
  const second = await env.quarantine();
  assert.equal(second.code, 452);
  assert.match(second.text, /^4\.3\.1 Insufficient system storage: quarantine full/);
  const { rows } = await env.gw.quarantine.list({ status: 'all' });
  assert.deepEqual(
    rows.map((r) => r.id),
    [first.id],
  );
  const refusedAfter = (await quarantineMetrics.actions.get()).values.find((v) => v.labels.action === 'refused_quota')?.value ?? 0;
  assert.equal(refusedAfter - refusedBefore, 1);
  // Room again after a delete: the retry is accepted.
  await env.gw.quarantine.delete([first.id]);
  assert.equal((await env.quarantine()).code, 250);
});
