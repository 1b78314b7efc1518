// Builds the tracer from the `tracing:` config: the no-op tracer when disabled, else the
// OpenTelemetry one, imported lazily here so a gateway without tracing never loads the SDK.
import type { TracingConfig } from '../config/tracing-schema.ts';
import { NOOP_TRACER, type Tracer } from './tracer.ts';

export async function createTracer(config: TracingConfig | undefined, onError?: (message: string) => void): Promise<Tracer> {
  if (!config?.enabled) return NOOP_TRACER;
  const { otelTracer } = await import('./otel-tracer.ts');
  return otelTracer(config, onError);
}
