/**
 * Helpers for the packaging e2e test: commands run asynchronously (the static server
 * answering apt and dnf lives in this process), a plain static file server on loopback,
 * a throwaway GnuPG home, and throwaway apt / dnf configurations that never read or
 * write the host's.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize, sep } from 'node:path';
import { run, type CliResult } from '../../helpers/cli.js';

export { run };
export type RunResult = CliResult;

/** Like run() but fails with the command's output when it exits non-zero. */
export async function runOk(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r.stdout;
}

export const haveCommand = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** A plain static file server (GET/HEAD) over `root` on 127.0.0.1, port 0. */
export async function serveStatic(root: string): Promise<{ url: string; requests: string[]; close: () => Promise<void> }> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    const file = normalize(join(root, path));
    let size = -1;
    try {
      const st = statSync(file);
      if (st.isFile() && (file + sep).startsWith(root + sep)) size = st.size;
    } catch {
      // 404 below
    }
    if ((req.method !== 'GET' && req.method !== 'HEAD') || size < 0) {
      res.writeHead(size < 0 ? 404 : 405).end();
      return;
    }
    res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A fresh GNUPGHOME with one passphrase-less signing key; returns its fingerprint. */
export async function throwawayKey(gnupghome: string, uid: string): Promise<string> {
  mkdirSync(gnupghome, { recursive: true, mode: 0o700 });
  const env = { GNUPGHOME: gnupghome };
  await runOk('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', uid, 'rsa3072', 'sign', '1d'], { env });
  const colons = await runOk('gpg', ['--batch', '--with-colons', '--list-secret-keys', uid], { env });
  const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(colons)?.[1];
  if (!fpr) throw new Error(`no fingerprint for ${uid}:\n${colons}`);
  return fpr;
}

export interface DpkgStanza {
  Package: string;
  Version: string;
  Architecture: string;
  'Multi-Arch'?: string;
}

/**
 * A throwaway system for apt and dpkg: `root` holds a dpkg database that lists only the
 * packages given (their files stay the host's), and `root/apt` an apt configuration, state
 * and cache. APT_CONFIG points apt at it before it reads anything, so the host's
 * /etc/apt (sources, apt.conf.d hooks, keyrings) and /var/lib/apt are never used; dpkg runs
 * with --root, so it installs into `root` and records there.
 */
export function aptRoot(root: string, sourcesLine: string, installed: DpkgStanza[]): { env: Record<string, string>; root: string } {
  const apt = join(root, 'apt');
  for (const d of [
    'etc/apt/sources.list.d',
    'etc/apt/apt.conf.d',
    'etc/apt/preferences.d',
    'etc/apt/trusted.gpg.d',
    'state/lists/partial',
    'cache/archives/partial',
    'log',
  ]) {
    mkdirSync(join(apt, d), { recursive: true });
  }
  const dpkg = join(root, 'var/lib/dpkg');
  for (const d of ['info', 'updates']) mkdirSync(join(dpkg, d), { recursive: true });
  writeFileSync(join(dpkg, 'available'), '');
  writeFileSync(
    join(dpkg, 'status'),
    installed
      .map((p) =>
        Object.entries({
          ...p,
          Status: 'install ok installed',
          Priority: 'optional',
          Maintainer: 'test <test@example.invalid>',
          Description: 'stand-in for the host package',
        })
          .map(([k, v]) => `${k}: ${v}`)
          .join('\n'),
      )
      .join('\n\n') + '\n',
  );
  for (const p of installed) writeFileSync(join(dpkg, 'info', `${p.Package}${p['Multi-Arch'] === 'same' ? `:${p.Architecture}` : ''}.list`), '');
  writeFileSync(join(apt, 'etc/apt/sources.list'), `${sourcesLine}\n`);
  const conf = [
    `Dir::Etc "${apt}/etc/apt";`,
    `Dir::State "${apt}/state";`,
    `Dir::State::status "${dpkg}/status";`,
    `Dir::Cache "${apt}/cache";`,
    `Dir::Log "${apt}/log";`,
    'Debug::NoLocking "true";',
    // The download method runs as root here: the temp dirs are not the _apt user's.
    'APT::Sandbox::User "root";',
    `DPkg::Options { "--root=${root}"; "--log=${apt}/log/dpkg.log"; };`,
  ].join('\n');
  writeFileSync(join(apt, 'apt.conf'), `${conf}\n`);
  return { env: { APT_CONFIG: join(apt, 'apt.conf'), DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' }, root };
}

/** The host's version of a package when dpkg knows it, else `fallback`. */
export function hostVersion(pkg: string, fallback: string): string {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout ? r.stdout : fallback;
}

/** A throwaway dnf configuration and install root: nothing of the host's is read. */
export function dnfRoot(dir: string, baseurl: string, gpgkey: string): { args: string[] } {
  for (const d of ['root', 'repos', 'cache', 'log', 'persist']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(
    join(dir, 'repos/oxyctl.repo'),
    `[oxyctl]\nname=oxyctl\nbaseurl=${baseurl}\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://${gpgkey}\nmetadata_expire=0\n`,
  );
  writeFileSync(
    join(dir, 'dnf.conf'),
    `[main]\nreposdir=${dir}/repos\ncachedir=${dir}/cache\nlogdir=${dir}/log\npersistdir=${dir}/persist\ninstall_weak_deps=False\n`,
  );
  return {
    args: [
      '-y',
      '--config',
      join(dir, 'dnf.conf'),
      '--installroot',
      join(dir, 'root'),
      '--releasever',
      '1',
      '--setopt',
      `reposdir=${dir}/repos`,
      '--disablerepo',
      '*',
      '--enablerepo',
      'oxyctl',
    ],
  };
}
