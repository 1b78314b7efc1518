// zod without its JIT: by default zod compiles a parser per object schema with `new Function`,
// code and source strings that stay on the heap for the life of the process (−0.4 MiB of JS heap
// at start). mailgate's schemas run only when a config or rules file is loaded, never per message.
// Imported first by every config module that parses at import time, so it runs before any parse.
import { z } from 'zod';

z.config({ jitless: true });
