// The smallest valid config for tests that drive the core offline (runOffline, the rules engine over
// the shipped rules): no backend to reach, no admin server, no capture file.
import { configSchema } from '../../src/config/schema.ts';

export const offlineConfig = configSchema.parse({
  hostname: 'mx.example.test',
  domains: ['example.test'],
  backend: { maildir: '/nonexistent' },
  admin: false,
  capture: false,
});
