// A span as the core sees it: attributes, a failure, children, an end. When tracing is off every
// span is the one shared NOOP_SPAN (its children are itself), so the hot path allocates nothing.
export type AttrValue = string | number | boolean | string[];

export interface Span {
  /** False for the no-op span: callers skip building attributes when nobody records them. */
  readonly recording: boolean;
  /** A child of this span (started now). */
  child(name: string): Span;
  set(key: string, value: AttrValue | undefined): Span;
  /** Marks the span failed (status ERROR) with this message. */
  fail(message: string): Span;
  /** Ends the span; a second call does nothing. */
  end(): void;
}

class NoopSpan implements Span {
  readonly recording = false;
  child(): Span {
    return this;
  }
  set(): Span {
    return this;
  }
  fail(): Span {
    return this;
  }
  end(): void {}
}

/** The one no-op span: every span of a gateway without tracing. */
export const NOOP_SPAN: Span = Object.freeze(new NoopSpan());
