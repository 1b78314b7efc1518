// A throwaway self-signed certificate for the TLS tests (openssl, EC P-256, valid 2 days,
// CN=mx.example.test): key.pem and cert.pem written into `dir`.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export function writeTestCert(dir: string): { key: string; cert: string } {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      '/CN=mx.example.test',
    ],
    { stdio: 'ignore' },
  );
  return { key, cert };
}
