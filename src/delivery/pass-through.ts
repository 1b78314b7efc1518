// A next hop that accepts everything and sends nothing: for fronts whose MTA delivers itself (the
// milter: Postfix delivers after our verdict) and for offline runs (`rules test`), so the core's
// mirrored transaction runs the same code whatever the front. It drains what it is given.
import { Readable } from 'node:stream';
import type { Backend, BackendReply, DeliveryLink } from '../pipeline/delivery.ts';

const ok = (text: string): BackendReply => ({ code: 250, enhanced: '2.0.0', lines: [text] });

export function passThroughBackend(description: string, accepted = 'Ok'): Backend {
  const link: DeliveryLink = {
    mail: async () => ok('Ok'),
    rcpt: async () => ok('Ok'),
    data: async (parts) => {
      for (const p of parts) if (p instanceof Readable) p.resume();
      return ok(accepted);
    },
    abort: async () => undefined,
    release: () => undefined,
  };
  return { description, link: () => link, probe: async () => ({ ok: true, detail: description }), close: () => undefined };
}
