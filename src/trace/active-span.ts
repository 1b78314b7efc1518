// The span a check runs in, for code that has no span passed to it (the DNS resolver, called by
// mailauth inside the SPF/DKIM/DMARC checks). Only a recording span is ever stored: with tracing
// off no AsyncLocalStorage is created and activeSpan() is the no-op span.
import { AsyncLocalStorage } from 'node:async_hooks';
import { NOOP_SPAN, type Span } from './span.ts';

let als: AsyncLocalStorage<Span> | undefined;

/** Runs `fn` with `span` as the active span (for what it calls, asynchronously too). */
export function runWithSpan<T>(span: Span, fn: () => T): T {
  if (!span.recording) return fn();
  als ??= new AsyncLocalStorage<Span>();
  return als.run(span, fn);
}

/** The active span, or the no-op span outside any (or with tracing off). */
export function activeSpan(): Span {
  return als?.getStore() ?? NOOP_SPAN;
}
