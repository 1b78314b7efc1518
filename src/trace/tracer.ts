// What the runtime holds: something that starts root spans and flushes at stop. The no-op tracer
// (tracing off) returns NOOP_SPAN and never loads @opentelemetry/*.
import { NOOP_SPAN, type Span } from './span.ts';

export interface Tracer {
  readonly enabled: boolean;
  /** A root span (a new trace). */
  startSpan(name: string): Span;
  /** Exports what is buffered and stops (gateway stop). */
  shutdown(): Promise<void>;
}

export const NOOP_TRACER: Tracer = Object.freeze({
  enabled: false,
  startSpan: (): Span => NOOP_SPAN,
  shutdown: async (): Promise<void> => {},
});
