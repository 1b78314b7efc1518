// bench_mailauth: the Haraka peer of mailgate's authentication checks, for the bench only
// (bench/lib/haraka.ts copies it into the Haraka instance). At data_post it runs mailauth's
// authenticate() — SPF, DKIM, ARC and DMARC in one call, DNS through node:dns (pointed at the
// bench's DNS stub by bench/lib/preload.cjs) — on the whole message, and prepends mailauth's
// Authentication-Results and Received-SPF headers. It never rejects: the row measures the cost.
// mailauth is the project's own copy (BENCH_MAILAUTH: its absolute path), the version mailgate runs.
'use strict';
let authenticate;
let shown = false; // the first message's results go to the log once (log level is warn), as a check

exports.register = function () {
  ({ authenticate } = require(process.env.BENCH_MAILAUTH));
};

exports.hook_data_post = function (next, connection) {
  const txn = connection.transaction;
  if (!txn) return next();
  txn.message_stream.get_data((message) => {
    // address-rfc2821: address is a method in older releases, a string property in newer ones
    const from = txn.mail_from;
    const sender = !from ? '' : typeof from.address === 'function' ? from.address() : String(from.address ?? '');
    authenticate(message, {
      ip: connection.remote.ip,
      helo: connection.hello?.host,
      sender,
      mta: 'haraka.bench.test',
      disableBimi: true,
    }).then(
      (res) => {
        txn.results.add(this, { pass: `dmarc:${res.dmarc?.status?.result ?? 'none'}` });
        if (!shown) {
          shown = true;
          connection.logwarn(this, `first message: spf=${res.spf?.status?.result} dkim=${res.dkim?.results?.[0]?.status?.result} dmarc=${res.dmarc?.status?.result} arc=${res.arc?.status?.result}`);
        }
        // "Name: value\r\n" fields, folded: unfold and prepend in mailauth's order
        const fields = String(res.headers ?? '').split(/\r?\n(?=\S)/).filter(Boolean);
        for (const f of fields.reverse()) {
          const i = f.indexOf(':');
          if (i > 0) txn.add_leading_header(f.slice(0, i), f.slice(i + 1).replace(/\r?\n[ \t]+/g, ' ').trim());
        }
        next();
      },
      (err) => {
        connection.logerror(this, `mailauth: ${err.message}`);
        next();
      },
    );
  });
};
