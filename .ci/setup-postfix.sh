#!/usr/bin/env bash
# Configures and (re)starts the machine's Postfix as the test backend MTA: 127.0.0.1:10025,
# virtual domain example.test (alice, bob, carol) delivered to Maildirs under $MAIL_BASE.
# Deliberately lenient about bare line endings, so an SMTP smuggling bug in mailgate would show.
# Idempotent; run as root. Used by .ci/run and by developers before `npm test`.
set -euo pipefail
MAIL_BASE=${MAIL_BASE:-/var/tmp/mailgate-test/mail}
mkdir -p "$MAIL_BASE"
chown -R nobody:nogroup "$(dirname "$MAIL_BASE")"
chmod -R a+rX "$(dirname "$MAIL_BASE")"

cat > /etc/postfix/main.cf <<CF
compatibility_level = 3.6
myhostname = backend.example.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = example.test
virtual_mailbox_maps = hash:/etc/postfix/vmailbox
virtual_mailbox_base = $MAIL_BASE
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_reject_unlisted_recipient = yes
smtpd_forbid_bare_newline = no
smtpd_authorized_xclient_hosts = 127.0.0.0/8
message_size_limit = 104857600
virtual_mailbox_limit = 0
alias_maps =
alias_database =
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = /tmp/postfix.log
smtputf8_enable = yes
header_checks = regexp:/etc/postfix/header_checks
# Relayed mail for other domains must never leave this box in tests.
default_transport = error:mailgate tests do not relay
relay_transport = error:mailgate tests do not relay
CF

cat > /etc/postfix/vmailbox <<VM
alice@example.test alice/
bob@example.test bob/
carol@example.test carol/
VM
postmap /etc/postfix/vmailbox
# A header that makes the backend reject at end of DATA: tests "backend rejects DATA".
echo '/^X-Backend-Reject:/ REJECT 5.7.1 rejected by backend header check' > /etc/postfix/header_checks

# master.cf: no port 25; smtpd on 127.0.0.1:10025; postlogd for maillog_file.
sed -i -E 's/^(smtp +inet .*)$/#\1/' /etc/postfix/master.cf
grep -q '^127.0.0.1:10025 ' /etc/postfix/master.cf || echo '127.0.0.1:10025 inet n - n - - smtpd' >> /etc/postfix/master.cf
grep -q '^postlog ' /etc/postfix/master.cf || echo 'postlog   unix-dgram n  -       n       -       1       postlogd' >> /etc/postfix/master.cf

postfix check
if postfix status >/dev/null 2>&1; then postfix stop >/dev/null 2>&1 || true; sleep 1; fi
postfix start >/dev/null 2>&1
for i in $(seq 1 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/10025) 2>/dev/null; then echo "postfix backend up on 127.0.0.1:10025 (mail in $MAIL_BASE)"; exit 0; fi
  sleep 0.2
done
echo "postfix did not come up on 127.0.0.1:10025" >&2
tail -20 /tmp/postfix.log >&2 || true
exit 1
