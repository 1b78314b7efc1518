// docker-compose.yml and the Dockerfile, right by construction (no container engine here): the
// compose CLI accepts the file, and every service, volume, network, mounted file and port it
// refers to exists and agrees with the configs it mounts (mailgate.yaml, Postfix, Prometheus, Grafana).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.ts';
import { isMaildirBackend } from '../../src/config/schema.ts';
import { freePort } from '../helpers/postfix.ts';

const root = resolve(import.meta.dirname, '..', '..');

interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string };
  user?: string;
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  networks?: string[];
  depends_on?: string[] | Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}
interface Compose {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
  networks: Record<string, { ipam?: { config: Array<{ subnet: string }> } }>;
}

const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as Compose;
const services = compose.services;

/** "SRC:DST[:ro]" → parts; SRC starting with . or / is a bind mount, else a named volume. */
function mounts(s: Service): Array<{ src: string; dst: string; bind: boolean }> {
  return (s.volumes ?? []).map((v) => {
    const [src = '', dst = ''] = v.split(':');
    return { src, dst, bind: src.startsWith('.') || src.startsWith('/') };
  });
}

/** The host file a container path of a service comes from (a bind mount of it or of a parent). */
function hostPathOf(s: Service, containerPath: string): string | undefined {
  for (const m of mounts(s)) {
    if (!m.bind) continue;
    if (containerPath === m.dst) return join(root, m.src);
    if (containerPath.startsWith(`${m.dst}/`)) return join(root, m.src, containerPath.slice(m.dst.length + 1));
  }
  return undefined;
}

/** Container ports a service publishes ("127.0.0.1:8025:8025" → 8025). */
function containerPorts(s: Service): number[] {
  return (s.ports ?? []).map((p) => Number(p.slice(p.lastIndexOf(':') + 1)));
}

function dependsOn(s: Service): Array<{ name: string; condition: string }> {
  const d = s.depends_on ?? [];
  return Array.isArray(d)
    ? d.map((name) => ({ name, condition: 'service_started' }))
    : Object.entries(d).map(([name, v]) => ({ name, condition: v.condition }));
}

function dockerfileOf(s: Service): string | undefined {
  if (!s.build) return undefined;
  return join(root, s.build.context, s.build.dockerfile ?? 'Dockerfile');
}

/** Compose v2 plugin (`docker compose`) or the Debian v1 `docker-compose`, whichever runs here. */
function composeCli(): string[] | undefined {
  const v2 = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
  if (v2.status === 0) return ['docker', 'compose'];
  const v1 = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
  if (v1.status === 0) return ['docker-compose'];
  return undefined;
}
const cli = composeCli();

test('docker compose config accepts docker-compose.yml', {
  skip: cli ? false : 'neither `docker compose` nor `docker-compose` is installed (apt-get install -y docker-compose)',
}, () => {
  const [cmd, ...pre] = cli as string[];
  const r = spawnSync(cmd as string, [...pre, '-f', 'docker-compose.yml', 'config', '-q'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

test('the stack has what the quick start promises', () => {
  for (const s of ['mailgate', 'redis', 'clamav', 'postfix', 'mailpit', 'prometheus', 'grafana']) assert.ok(services[s], s);
  assert.equal(services.mailgate?.build?.context, '.');
  assert.ok(services.clamav?.image?.startsWith('clamav/clamav:'), 'official ClamAV image (runs freshclam)');
});

test('every service has a pinned image or a build with a Dockerfile', () => {
  for (const [name, s] of Object.entries(services)) {
    if (s.build) assert.ok(existsSync(dockerfileOf(s) as string), `${name}: ${dockerfileOf(s)}`);
    else {
      assert.ok(s.image, `${name}: image or build`);
      const tag = s.image.slice(s.image.lastIndexOf(':') + 1);
      assert.ok(s.image.includes(':') && tag !== 'latest' && /\d/.test(tag), `${name}: ${s.image} is not pinned by a version tag`);
    }
  }
});

test('every named volume is declared and used; every bind mount exists', () => {
  const used = new Set<string>();
  for (const [name, s] of Object.entries(services)) {
    for (const m of mounts(s)) {
      if (m.bind) assert.ok(existsSync(join(root, m.src)), `${name}: bind mount ${m.src} does not exist`);
      else {
        assert.ok(m.src in compose.volumes, `${name}: volume ${m.src} is not declared under volumes:`);
        used.add(m.src);
      }
    }
  }
  for (const v of Object.keys(compose.volumes)) assert.ok(used.has(v), `volume ${v} is declared but unused`);
});

test('networks, dependencies and health conditions refer to what exists', () => {
  for (const [name, s] of Object.entries(services)) {
    for (const n of s.networks ?? []) assert.ok(n in compose.networks, `${name}: network ${n}`);
    for (const d of dependsOn(s)) {
      const target = services[d.name];
      assert.ok(target, `${name}: depends_on ${d.name}`);
      if (d.condition === 'service_healthy') {
        const df = dockerfileOf(target);
        const imageHealth = df !== undefined && readFileSync(df, 'utf8').includes('HEALTHCHECK');
        assert.ok(target.healthcheck || imageHealth, `${name}: waits for ${d.name} to be healthy, which has no healthcheck`);
      }
    }
  }
});

test('nothing runs as root except the two that must start as root and drop privileges', () => {
  const mustStartAsRoot = new Set(['postfix', 'clamav']); // Postfix's master; the ClamAV image's init
  for (const [name, s] of Object.entries(services)) {
    if (mustStartAsRoot.has(name)) continue;
    assert.ok(s.user, `${name}: no user: (the image may default to root)`);
    const uid = s.user.split(':')[0];
    assert.ok(uid !== '0' && uid !== 'root', `${name}: runs as root`);
  }
});

test('Redis persists (AOF) into a volume', () => {
  const r = services.redis as Service;
  const cmd = (r.command ?? []).join(' ');
  assert.match(cmd, /--appendonly yes/);
  assert.ok(
    mounts(r).some((m) => !m.bind && m.dst === '/data'),
    'redis /data on a named volume',
  );
});

test('the Redis command line starts a real redis-server with AOF on', {
  skip: existsSync('/usr/bin/redis-server') ? false : 'redis-server is missing',
}, async () => {
  const args = (services.redis?.command ?? []).slice(1);
  const dir = mkdtempSync(join(tmpdir(), 'mg-compose-redis-'));
  const port = await freePort();
  const child = spawn('redis-server', [...args, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir], { stdio: 'ignore' });
  try {
    const ask = async (cmd: string): Promise<string> => {
      for (let i = 0; i < 100; i++) {
        const r = await new Promise<string | undefined>((res) => {
          const s = net.connect(port, '127.0.0.1', () => s.write(cmd));
          s.on('data', (d) => {
            res(d.toString());
            s.destroy();
          });
          s.on('error', () => res(undefined));
        });
        if (r !== undefined) return r;
        await new Promise((res) => setTimeout(res, 50));
      }
      throw new Error('redis-server did not answer');
    };
    assert.match(await ask('CONFIG GET appendonly\r\n'), /appendonly\r\n\$3\r\nyes/);
    assert.match(await ask('CONFIG GET save\r\n'), /300 10/);
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test("mailgate's mounted config is valid and agrees with ports, backend, Redis and the healthcheck", () => {
  const mg = services.mailgate as Service;
  const cfgPath = mg.environment?.MAILGATE_CONFIG as string;
  const host = hostPathOf(mg, cfgPath);
  assert.ok(host && existsSync(host), `MAILGATE_CONFIG ${cfgPath} is not mounted from the repo`);
  const { config } = loadConfig(host, {});
  const published = containerPorts(mg);
  for (const l of config.listen) assert.ok(published.includes(l.port), `listen port ${l.port} not published`);
  assert.ok(config.admin !== false);
  const admin = config.admin as { host: string; port: number };
  assert.equal(admin.host, '0.0.0.0', 'admin must listen beyond loopback for Prometheus');
  assert.ok(published.includes(admin.port));
  assert.ok(mg.healthcheck?.test.join(' ').includes(`127.0.0.1:${admin.port}/readyz`), 'healthcheck on /readyz');
  // Rules are mounted where the config reads them.
  assert.ok(hostPathOf(mg, config.rules) && statSync(hostPathOf(mg, config.rules) as string).isDirectory(), `rules ${config.rules} not mounted`);
  // State lives on the named volume.
  const varMount = mounts(mg).find((m) => !m.bind);
  assert.ok(varMount && config.quarantine.dir.startsWith(`${varMount.dst}/`), 'quarantine on the state volume');
  // Backend: the postfix service on the port its master.cf listens on.
  assert.ok(!isMaildirBackend(config.backend));
  const backend = config.backend as { host: string; port: number };
  assert.ok(services[backend.host], `backend host ${backend.host} is not a service`);
  const master = readFileSync(join(root, 'deploy', 'compose', 'postfix', 'master.cf'), 'utf8');
  assert.match(master, new RegExp(`^${backend.port}\\s+inet\\s`, 'm'));
  // Redis URL points at the redis service.
  const url = new URL(mg.environment?.MAILGATE_REDIS_URL as string);
  assert.ok(services[url.hostname], `redis host ${url.hostname}`);
});

test('Postfix authorises XCLIENT from the compose subnet and relays to the mailpit service', () => {
  const main = readFileSync(join(root, 'deploy', 'compose', 'postfix', 'main.cf'), 'utf8');
  const subnet = compose.networks.mail?.ipam?.config[0]?.subnet;
  assert.ok(subnet);
  assert.ok(main.includes(`smtpd_authorized_xclient_hosts = ${subnet}`));
  assert.ok(main.includes('smtp:[mailpit]:1025') && services.mailpit, 'transport to mailpit:1025');
});

test('Prometheus scrapes mailgate on its admin port and loads the mounted alert rules', () => {
  const p = services.prometheus as Service;
  const cfgFile = hostPathOf(p, '/etc/prometheus/prometheus.yml');
  assert.ok(cfgFile && existsSync(cfgFile));
  const prom = parse(readFileSync(cfgFile, 'utf8')) as {
    rule_files: string[];
    scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }>;
  };
  for (const rf of prom.rule_files) assert.ok(hostPathOf(p, `/etc/prometheus/${rf}`), `rule file ${rf} not mounted`);
  const job = prom.scrape_configs.find((j) => j.job_name === 'mailgate');
  assert.ok(job, 'job mailgate (the dashboard and alerts select job="mailgate")');
  const mgCfg = loadConfig(hostPathOf(services.mailgate as Service, '/etc/mailgate/mailgate.yaml') as string, {}).config;
  for (const t of job.static_configs.flatMap((s) => s.targets)) {
    const [h, port] = t.split(':');
    assert.ok(services[h as string], `target ${t}`);
    assert.equal(Number(port), (mgCfg.admin as { port: number }).port);
  }
});

test('Grafana provisions the Prometheus datasource and the dashboard from mounted files', () => {
  const g = services.grafana as Service;
  const ds = parse(readFileSync(hostPathOf(g, '/etc/grafana/provisioning/datasources/prometheus.yml') as string, 'utf8')) as {
    datasources: Array<{ url: string }>;
  };
  const u = new URL(ds.datasources[0]?.url as string);
  assert.ok(services[u.hostname], `datasource host ${u.hostname}`);
  assert.ok(containerPorts(services[u.hostname] as Service).includes(Number(u.port)), 'datasource port is the one Prometheus serves');
  const prov = parse(readFileSync(hostPathOf(g, '/etc/grafana/provisioning/dashboards/mailgate.yml') as string, 'utf8')) as {
    providers: Array<{ options: { path: string } }>;
  };
  const dir = hostPathOf(g, prov.providers[0]?.options.path as string);
  assert.ok(dir && existsSync(join(dir, 'mailgate.json')), 'dashboard JSON under the provider path');
  const home = g.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH as string;
  assert.ok(existsSync(hostPathOf(g, home) as string), `home dashboard ${home}`);
});

// --- Dockerfile

const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
const lines = dockerfile.split('\n').filter((l) => !l.startsWith('#'));

test('Dockerfile: multi-stage on an official Node 24 slim image pinned by version', () => {
  const froms = lines.filter((l) => l.startsWith('FROM '));
  assert.ok(froms.length >= 2, 'multi-stage');
  for (const f of froms) assert.match(f, /^FROM node:24\.\d+\.\d+-[a-z]+-slim( AS \w+)?$/);
});

test('Dockerfile: production deps only, non-root, healthcheck on /healthz, volumes, ports of its default config', () => {
  assert.match(dockerfile, /npm ci --omit=dev/);
  const user = lines.filter((l) => l.startsWith('USER ')).at(-1);
  assert.ok(user && !/USER (root|0)\b/.test(user), 'runs as a non-root user');
  assert.match(dockerfile, /HEALTHCHECK[^\n]*\n[^\n]*\/healthz/);
  const vol = lines.find((l) => l.startsWith('VOLUME '));
  assert.ok(vol?.includes('"/etc/mailgate"') && vol.includes('"/var/lib/mailgate"'));
  const expose = (lines.find((l) => l.startsWith('EXPOSE ')) ?? '').split(' ').slice(1).map(Number);
  const { config } = loadConfig(join(root, 'deploy', 'docker', 'mailgate.yaml'), {});
  for (const l of config.listen) assert.ok(expose.includes(l.port), `listen ${l.port} exposed`);
  assert.ok(expose.includes((config.admin as { port: number }).port), 'admin port exposed');
  for (const p of [config.quarantine.dir]) assert.ok(p.startsWith('/var/lib/mailgate/'), `${p} on the state volume`);
  assert.ok(config.rules.startsWith('/etc/mailgate/'));
});

test('Dockerfile: every COPY source exists and .dockerignore keeps it in the build context', () => {
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  for (const l of lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from='))) {
    const parts = l
      .split(' ')
      .slice(1)
      .filter((p) => !p.startsWith('--'));
    for (const src of parts.slice(0, -1)) {
      assert.ok(existsSync(join(root, src)), `COPY ${src}: missing`);
      assert.ok(!ignore.some((i) => src === i || src.startsWith(`${i}/`)), `COPY ${src} is excluded by .dockerignore`);
    }
  }
});
