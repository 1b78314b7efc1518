// A minimal SMTP relay in plain Node, for one bench row only (never shipped): how much of
// mailgate's relay-leg CPU is the work any Node proxy must do on these sockets (accept, 7 replies,
// read DATA, 4 backend round trips on a pooled session, close), and how much is smtp-server, its
// patches and mailgate's own code. It does what mailgate's relay leg does on the wire and nothing
// else: one reply per write, TCP_NODELAY, the backend session greeted once and reused (MAIL,
// RCPT, DATA, the message and "." in one write), no checks, no spool, no parsing beyond the verbs.
// Run: node bench/minimal-relay.ts BACKEND_PORT — prints "port N" and serves until killed.
import { connect, createServer, type Socket } from 'node:net';

const backendPort = Number(process.argv[2]);
const EHLO = '250-minimal.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n';

/** A greeted backend session: sends one command (or block) and waits for one reply. */
class BackendSession {
  readonly sock: Socket;
  #buf = '';
  #wait: ((line: string) => void) | undefined;
  closed = false;
  constructor(sock: Socket) {
    this.sock = sock;
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      this.#buf += d.toString('latin1');
      // a complete reply ends with "NNN text\r\n" (no dash after the code)
      for (;;) {
        const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(this.#buf);
        if (!m) return;
        const line = m[0];
        this.#buf = this.#buf.slice(m.index + line.length);
        const w = this.#wait;
        this.#wait = undefined;
        w?.(line);
      }
    });
    sock.on('error', () => (this.closed = true));
    sock.on('close', () => (this.closed = true));
  }
  reply(): Promise<string> {
    return new Promise((r) => (this.#wait = r));
  }
  async send(data: string | Buffer): Promise<string> {
    const p = this.reply();
    this.sock.write(data);
    return p;
  }
}

const idle: BackendSession[] = [];
async function backend(): Promise<BackendSession> {
  for (let s = idle.pop(); s; s = idle.pop()) if (!s.closed) return s;
  const s = new BackendSession(connect({ host: '127.0.0.1', port: backendPort }));
  await s.reply(); // 220
  await s.send('EHLO minimal.bench.test\r\n');
  return s;
}

/** "." lines and the end of DATA: the client's bytes are relayed as they are (already stuffed). */
async function relay(from: string, to: string, body: Buffer): Promise<string> {
  const s = await backend();
  await s.send(`MAIL FROM:<${from}>\r\n`);
  await s.send(`RCPT TO:<${to}>\r\n`);
  await s.send('DATA\r\n');
  const r = await s.send(body);
  idle.push(s);
  return r.slice(0, 3);
}

createServer((c) => {
  c.setNoDelay(true);
  let buf: Buffer = Buffer.alloc(0);
  let inData = false;
  let from = '';
  let to = '';
  c.write('220 minimal.bench.test ESMTP\r\n');
  c.on('error', () => c.destroy());
  c.on('data', (d: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    for (;;) {
      if (inData) {
        const end = buf.indexOf('\r\n.\r\n');
        if (end < 0) return;
        const body = buf.subarray(0, end + 5);
        buf = buf.subarray(end + 5);
        inData = false;
        relay(from, to, body).then(
          (code) => c.write(code === '250' ? '250 2.0.0 Ok: queued\r\n' : '451 4.3.0 backend refused\r\n'),
          () => c.write('451 4.3.0 backend failed\r\n'),
        );
        continue;
      }
      const lf = buf.indexOf('\n');
      if (lf < 0) return;
      const line = buf.subarray(0, lf).toString('latin1').replace(/\r$/, '');
      buf = buf.subarray(lf + 1);
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO' || verb === 'HELO') c.write(verb === 'EHLO' ? EHLO : '250 minimal.bench.test\r\n');
      else if (verb === 'MAIL') {
        from = /<([^>]*)>/.exec(line)?.[1] ?? '';
        c.write('250 2.1.0 Ok\r\n');
      } else if (verb === 'RCPT') {
        to = /<([^>]*)>/.exec(line)?.[1] ?? '';
        c.write('250 2.1.5 Ok\r\n');
      } else if (verb === 'DATA') {
        inData = true;
        c.write('354 End data with <CR><LF>.<CR><LF>\r\n');
      } else if (verb === 'QUIT') {
        c.end('221 2.0.0 Bye\r\n');
        return;
      } else if (verb === 'RSET' || verb === 'NOOP') c.write('250 2.0.0 Ok\r\n');
      else c.write('502 5.5.2 Error: command not recognized\r\n');
    }
  });
}).listen(0, '127.0.0.1', function (this: import('node:net').Server) {
  const a = this.address();
  process.stdout.write(`port ${typeof a === 'object' && a ? a.port : 0}\n`);
});
