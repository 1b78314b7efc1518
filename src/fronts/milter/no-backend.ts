// The Backend of a milter-only gateway (no SMTP listeners, `backend` absent): the MTA delivers,
// so nothing may ever relay through this one; /readyz reports it as not applicable.
import type { Backend, BackendLink } from '../../smtp/backend.ts';

export const noBackend: Backend = {
  description: 'none (milter only: the MTA delivers)',
  link(): BackendLink {
    throw new Error('no backend configured: this gateway only serves the milter front');
  },
  probe: async () => ({ ok: true, detail: 'no backend (milter only)' }),
  close: () => undefined,
};
