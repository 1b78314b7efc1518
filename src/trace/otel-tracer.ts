// The OpenTelemetry tracer: the official SDK (@opentelemetry/sdk-trace) batching spans to the
// OTLP/HTTP exporter (JSON encoding) at `tracing.endpoint`. Loaded only by create-tracer.ts, and
// only when `tracing.enabled`. Parents are passed explicitly (span.child), so no context manager
// (AsyncLocalStorage) is installed: nothing of the SDK runs outside the spans we make.
import { DiagLogLevel, ROOT_CONTEXT, SpanStatusCode, diag, trace, type Span as OtelApiSpan, type Tracer as OtelApiTracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../config/tracing-schema.ts';
import { NOOP_SPAN, type AttrValue, type Span } from './span.ts';
import type { Tracer } from './tracer.ts';

class OtelSpan implements Span {
  readonly recording = true;
  readonly #tracer: OtelApiTracer;
  readonly #span: OtelApiSpan;
  #ended = false;

  constructor(tracer: OtelApiTracer, span: OtelApiSpan) {
    this.#tracer = tracer;
    this.#span = span;
  }

  child(name: string): Span {
    if (this.#ended) return NOOP_SPAN;
    return new OtelSpan(this.#tracer, this.#tracer.startSpan(name, undefined, trace.setSpan(ROOT_CONTEXT, this.#span)));
  }

  set(key: string, value: AttrValue | undefined): Span {
    if (value !== undefined && !this.#ended) this.#span.setAttribute(key, value);
    return this;
  }

  fail(message: string): Span {
    if (!this.#ended) this.#span.setStatus({ code: SpanStatusCode.ERROR, message });
    return this;
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#span.end();
  }
}

export function otelTracer(config: TracingConfig, onError?: (message: string) => void): Tracer {
  // Export failures (collector down) surface through diag: one warning each, never a throw.
  if (onError) {
    const report = (m: string, ...rest: unknown[]) => onError([m, ...rest.map((r) => (r instanceof Error ? r.message : String(r)))].join(' '));
    diag.setLogger({ error: report, warn: report, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN);
  }
  const exporter = new OTLPTraceExporter({ url: config.endpoint, headers: { ...config.headers } });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: config.service_name }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sample_ratio) }),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  const tracer = provider.getTracer('mailgate');
  return {
    enabled: true,
    startSpan(name: string): Span {
      const span = tracer.startSpan(name, undefined, ROOT_CONTEXT);
      // Not sampled: the whole trace is the no-op span (children included).
      return span.isRecording() ? new OtelSpan(tracer, span) : NOOP_SPAN;
    },
    async shutdown(): Promise<void> {
      await provider.shutdown();
    },
  };
}
