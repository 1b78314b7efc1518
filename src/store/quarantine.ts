// Moved: the quarantine now lives in src/delivery/quarantine/ (durable files + index, release,
// digests). This re-export keeps the old import path working until the lead's core lands.
export { QuarantineStore, type QuarantineMeta } from '../delivery/quarantine/store.ts';
