// The `tracing:` key: optional OpenTelemetry tracing, spans per message, stage and check exported
// over OTLP/HTTP (JSON) to a collector. Off by default; when off nothing of OpenTelemetry is loaded.
import { z } from 'zod';

export const tracingSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** The collector's OTLP/HTTP traces URL (the path included: /v1/traces). */
  endpoint: z
    .string()
    .refine((s) => /^https?:\/\/[^\s/]+/.test(s) && URL.canParse(s), 'expected an http(s) URL, e.g. http://127.0.0.1:4318/v1/traces')
    .default('http://127.0.0.1:4318/v1/traces'),
  /** The resource's service.name. */
  service_name: z.string().min(1).default('mailgate'),
  /** Share of message traces kept (by trace id: a message's spans are kept or dropped together). */
  sample_ratio: z.number().min(0).max(1).default(1),
  /** Extra HTTP headers on every export (a collector's auth token); `config dump` shows them as ***. */
  headers: z.record(z.string(), z.string()).default({}),
});

export type TracingConfig = z.output<typeof tracingSchema>;
