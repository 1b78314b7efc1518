// The `milter:` config section and the rule that `backend` is optional only for a milter-only
// gateway: problems are reported with file, line and key, like every config error.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';

function problems(text: string): string[] {
  try {
    parseConfig('/etc/mailgate/mailgate.yaml', text, {});
    return [];
  } catch (err) {
    if (err instanceof SourceErrors) return err.problems.map((p) => p.message);
    throw err;
  }
}

const base = 'hostname: mx.example.test\ndomains: [example.test]\n';

describe('milter config (table)', () => {
  const cases: Array<{ desc: string; yaml: string; expected: string[] }> = [
    { desc: 'milter only: no listen, no backend', yaml: `${base}listen: []\nmilter: { listen: "inet:11332@127.0.0.1" }\n`, expected: [] },
    {
      desc: 'both fronts',
      yaml: `${base}backend: { host: 127.0.0.1, port: 10025 }\nmilter:\n  listen: "unix:/var/spool/postfix/mailgate/milter.sock"\n  mode: "0660"\n  owner: postfix:postfix\n  quarantine: store\n`,
      expected: [],
    },
    {
      desc: 'SMTP listeners (the default) without backend',
      yaml: `${base}milter: { listen: "inet:11332@127.0.0.1" }\n`,
      expected: [
        '/etc/mailgate/mailgate.yaml:1: backend: required: SMTP listeners (listen) relay to a backend; for a milter-only gateway set `listen: []` and `milter:`',
      ],
    },
    {
      desc: 'no listener at all',
      yaml: `${base}listen: []\n`,
      expected: ['/etc/mailgate/mailgate.yaml:3: listen: no listener: give at least one SMTP listener, or a `milter:` listener'],
    },
    {
      desc: 'bad milter address',
      yaml: `${base}listen: []\nmilter:\n  listen: "tcp:11332"\n`,
      expected: ['/etc/mailgate/mailgate.yaml:5: milter.listen: expected "inet:PORT@HOST" or "unix:/PATH"'],
    },
    {
      desc: 'bad mode',
      yaml: `${base}listen: []\nmilter:\n  listen: "unix:/run/m.sock"\n  mode: "rw"\n`,
      expected: ['/etc/mailgate/mailgate.yaml:6: milter.mode: expected an octal mode like "0660"'],
    },
    {
      desc: 'unknown quarantine mode',
      yaml: `${base}listen: []\nmilter:\n  listen: "inet:1@h"\n  quarantine: drop\n`,
      expected: ['/etc/mailgate/mailgate.yaml:6: milter.quarantine: Invalid option: expected one of "hold"|"store"'],
    },
    {
      desc: 'unknown key',
      yaml: `${base}listen: []\nmilter:\n  listen: "inet:1@h"\n  sokcet: x\n`,
      expected: ['/etc/mailgate/mailgate.yaml:6: milter.sokcet: unknown key "sokcet"'],
    },
  ];
  for (const c of cases) test(c.desc, () => assert.deepEqual(problems(c.yaml), c.expected));

  test('defaults', () => {
    const { config } = parseConfig('/x.yaml', `${base}listen: []\nmilter: { listen: "inet:11332@127.0.0.1" }\n`, {});
    assert.deepEqual(config.milter, { listen: 'inet:11332@127.0.0.1', quarantine: 'hold', max_packet_bytes: 1_048_576 });
    assert.equal(config.backend, undefined);
  });
});
