// Facts the SMTP front itself records about the connection and the envelope, before any check.
// Checks declare their own facts next to their code; the registry (fact-registry.ts) joins them.
import type { FactSpec } from './facts.ts';

export const coreFacts: readonly FactSpec[] = [
  { name: 'client.ip', stage: 'connect', type: 'ip', description: 'Client IP address (after PROXY protocol)' },
  { name: 'client.port', stage: 'connect', type: 'number', description: 'Client TCP port' },
  { name: 'client.proxied', stage: 'connect', type: 'boolean', description: 'Connection came through a PROXY-protocol load balancer' },
  { name: 'client.proxy_ip', stage: 'connect', type: 'ip', description: 'Address of the PROXY-protocol load balancer, if any' },
  { name: 'client.local_port', stage: 'connect', type: 'number', description: 'Listener port the client connected to' },
  { name: 'helo.name', stage: 'helo', type: 'string', description: 'Name given in HELO/EHLO, as sent' },
  { name: 'helo.esmtp', stage: 'helo', type: 'boolean', description: 'Client used EHLO (not HELO)' },
  { name: 'tls', stage: 'mail', type: 'boolean', description: 'Session is encrypted (STARTTLS or implicit TLS)' },
  { name: 'tls.version', stage: 'mail', type: 'string', description: 'TLS protocol version, e.g. TLSv1.3' },
  { name: 'tls.cipher', stage: 'mail', type: 'string', description: 'TLS cipher name' },
  { name: 'mail.from', stage: 'mail', type: 'string', description: 'Envelope sender (MAIL FROM), lower-cased domain; "" for the null sender' },
  { name: 'mail.from_domain', stage: 'mail', type: 'string', description: 'Domain of the envelope sender; "" for the null sender' },
  { name: 'mail.null_sender', stage: 'mail', type: 'boolean', description: 'MAIL FROM:<> (a bounce or other DSN)' },
  { name: 'mail.size_declared', stage: 'mail', type: 'number', description: 'SIZE= parameter of MAIL FROM, 0 if absent' },
  { name: 'mail.body', stage: 'mail', type: 'string', description: 'BODY= parameter (7BIT, 8BITMIME), "" if absent' },
  { name: 'mail.smtputf8', stage: 'mail', type: 'boolean', description: 'SMTPUTF8 parameter given' },
  { name: 'mail.transaction', stage: 'mail', type: 'number', description: 'Transaction number on this connection, from 1' },
  { name: 'rcpt.address', stage: 'rcpt', type: 'string', description: 'Recipient being checked (at rcpt); at data, use rcpt.addresses' },
  { name: 'rcpt.domain', stage: 'rcpt', type: 'string', description: 'Domain of the recipient being checked' },
  { name: 'rcpt.addresses', stage: 'data', type: 'string[]', description: 'All accepted recipients of the message' },
  { name: 'rcpt.count', stage: 'data', type: 'number', description: 'Number of accepted recipients' },
  { name: 'message.size', stage: 'data', type: 'number', description: 'Message size in bytes' },
  {
    name: 'message.headers',
    stage: 'data',
    type: 'records',
    fields: ['name', 'value'],
    description: 'Header fields in order (name as written, value unfolded)',
  },
  { name: 'message.subject', stage: 'data', type: 'string', description: 'Subject header, decoded' },
  { name: 'message.from', stage: 'data', type: 'string[]', description: 'Addresses in the From header (RFC 5322.From)' },
  { name: 'message.from_domain', stage: 'data', type: 'string', description: 'Domain of the single From address ("" when none or several)' },
  { name: 'message.message_id', stage: 'data', type: 'string', description: 'Message-ID header' },
  { name: 'message.bare_newlines', stage: 'data', type: 'boolean', description: 'DATA contained bare CR or LF (normalised to CRLF)' },
  { name: 'message.nul_bytes', stage: 'data', type: 'boolean', description: 'DATA contained NUL bytes (stripped: smtp.nul_bytes)' },
];

/** Facts only the milter front sets (from Postfix's macros); declared here so every rules file may read them. */
export const milterFacts: readonly FactSpec[] = [
  {
    name: 'milter.client_name',
    stage: 'connect',
    type: 'string',
    description: 'Milter front: the client name Postfix verified ({client_name}); "" when unknown',
  },
  { name: 'milter.daemon_name', stage: 'connect', type: 'string', description: 'Milter front: Postfix service name ({daemon_name}), e.g. smtpd' },
  { name: 'milter.mta_hostname', stage: 'connect', type: 'string', description: "Milter front: the MTA's hostname (macro j)" },
  {
    name: 'milter.queue_id',
    stage: 'data',
    type: 'string',
    description: "Milter front: the MTA's queue id (macro i; Postfix assigns it after the first RCPT)",
  },
  {
    name: 'milter.authenticated',
    stage: 'mail',
    type: 'boolean',
    description: 'Milter front: the client logged in with SMTP AUTH in Postfix ({auth_authen} set)',
  },
  { name: 'milter.auth_user', stage: 'mail', type: 'string', description: 'Milter front: the SASL login name ({auth_authen})' },
];
