// libmime, required on first use. It is needed for RFC 2047 encoded words and the guess of a
// type from a file name's extension only; it and its charset tables (iconv-lite,
// encoding-japanese: ~0.7 M characters of source, several MiB of heap) stay unloaded in a
// gateway whose mail carries none, or whose content checks are off. `require`, not `import`:
// libmime ships an ESM and a CommonJS build, and mailauth requires the CommonJS one, so one copy
// serves both. The first call costs one synchronous require (35–45 ms on the bench VM) when
// nothing loaded it before; with the auth checks on, mailauth has loaded it at start.
import { createRequire } from 'node:module';
import type Libmime from 'libmime';

let loaded: typeof Libmime | undefined;

export function libmime(): typeof Libmime {
  loaded ??= createRequire(import.meta.url)('libmime') as typeof Libmime;
  return loaded;
}
