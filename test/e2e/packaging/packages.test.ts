/**
 * npm run package and npm run repo, end to end: the .deb and .rpm are built once (from
 * this checkout's build), a repository signed with a throwaway key is served on loopback
 * by a plain static server, and the real clients consume it:
 *
 * - apt: `apt-get update` + `apt-get install oxyctl` into a throwaway root (APT_CONFIG for
 *   apt, dpkg --root), whose dpkg database holds only the packages oxyctl depends on — so
 *   apt resolves the real Depends, dpkg unpacks, records and removes the real files, and
 *   nothing of the host's apt or dpkg state is read or written. The installed
 *   /usr/bin/oxyctl then runs with the system node, and man reads the installed page.
 * - yum: dnf (Debian's) with gpgcheck and repo_gpgcheck in a throwaway install root reads
 *   the signed repodata; the package is installed with rpm --root, signature required.
 *
 * Installing as root into a temp root rather than the host's: it is the same dpkg/rpm
 * code path, with cleanup guaranteed by deleting a directory. Needs root (dpkg and rpm
 * chown what they unpack) and the Debian tools setup.sh installs.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../helpers/cli.js';
import { privilegedDescribe, privilegedTestsRequired } from '../../helpers/privileged.js';
import { aptRoot, dnfRoot, haveCommand, hostVersion, run, runOk, serveStatic, throwawayKey, type DpkgStanza } from './helpers.js';

const TOOLS = ['dpkg-deb', 'dpkg-shlibdeps', 'rpmbuild', 'rpmsign', 'lintian', 'reprepro', 'createrepo_c', 'gpg', 'apt-get', 'dnf', 'man'];
const missingTools = TOOLS.filter((t) => !haveCommand(t));
const built = existsSync(join(ROOT, 'dist/cli/service.js')) && existsSync(join(ROOT, 'build/Release/oxy_native.node'));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const DEB_ARCH = 'amd64';
const RPM_ARCH = 'x86_64';

/** The packages oxyctl depends on, as the throwaway dpkg database lists them. */
const HOST_DEPS = (nodeVersion: string): DpkgStanza[] => [
  { Package: 'nodejs', Version: nodeVersion, Architecture: DEB_ARCH },
  { Package: 'libc6', Version: hostVersion('libc6', '2.36-9'), Architecture: DEB_ARCH, 'Multi-Arch': 'same' },
  { Package: 'libgcc-s1', Version: hostVersion('libgcc-s1', '12.2.0-14'), Architecture: DEB_ARCH, 'Multi-Arch': 'same' },
  { Package: 'libstdc++6', Version: hostVersion('libstdc++6', '12.2.0-14'), Architecture: DEB_ARCH, 'Multi-Arch': 'same' },
  // Our addon's QUIC client (ngtcp2 + GnuTLS).
  { Package: 'libngtcp2-9', Version: hostVersion('libngtcp2-9', '0.12.1+dfsg-1+deb12u1'), Architecture: DEB_ARCH, 'Multi-Arch': 'same' },
  {
    Package: 'libngtcp2-crypto-gnutls2',
    Version: hostVersion('libngtcp2-crypto-gnutls2', '0.12.1+dfsg-1+deb12u1'),
    Architecture: DEB_ARCH,
    'Multi-Arch': 'same',
  },
  { Package: 'libgnutls30', Version: hostVersion('libgnutls30', '3.7.9-2+deb12u7'), Architecture: DEB_ARCH, 'Multi-Arch': 'same' },
];

let work: string;
let out: string;
let repo: string;
let served: string;
let gnupghome: string;
let server: Awaited<ReturnType<typeof serveStatic>>;
let deb: string;
let rpm: string;

// Timeouts here are hang detectors three times the others': lintian, apt, dpkg, dnf and gpg are CPU
// work, and with files in parallel at load 12 lintian alone passed 120 s (20.8 s in a quiet CI run).
function body(): void {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'oxyctl-pkg-'));
    out = join(work, 'packages');
    repo = join(work, 'repo');
    served = join(work, 'www');
    gnupghome = join(work, 'gnupg');
    const printed = await runOk('bash', [join(ROOT, 'packaging/build.sh')], { env: { OXY_PACKAGE_OUT: out } });
    deb = join(out, `oxyctl_${VERSION}_${DEB_ARCH}.deb`);
    rpm = join(out, `oxyctl-${VERSION}.${RPM_ARCH}.rpm`);
    expect(printed.trim().split('\n')).toEqual([deb, rpm]);

    const fpr = await throwawayKey(gnupghome, 'oxyctl test repository <repo@oxyctl.example>');
    await runOk('bash', [join(ROOT, 'packaging/repo.sh'), '--key', fpr, '--url', 'http://127.0.0.1:1/'], {
      env: { GNUPGHOME: gnupghome, OXY_PACKAGE_OUT: out, OXY_REPO_OUT: repo },
    });
    mkdirSync(served);
    cpSync(repo, join(served, 'good'), { recursive: true });
    server = await serveStatic(served);
    // Both packages built from a copy of node_modules (~70 s alone on 2 cores): past 240 s at load 13
    // with files in parallel, past 480 s at load 16-25 (/tmp/ci13a.log, three benchmarking helpers).
  }, 900_000);

  afterAll(async () => {
    await server?.close();
    if (gnupghome) await run('gpgconf', ['--kill', 'all'], { env: { GNUPGHOME: gnupghome } });
    // dnf (librepo) checks repo_gpgcheck with a keyring of its own in its cache, and an agent.
    for (const dir of work && existsSync(work) ? readdirSync(work).filter((d) => d.startsWith('dnf-')) : []) {
      const cache = join(work, dir, 'cache');
      for (const repoCache of existsSync(cache) ? readdirSync(cache) : []) {
        const pubring = join(cache, repoCache, 'pubring');
        if (existsSync(pubring)) await run('gpgconf', ['--homedir', pubring, '--kill', 'all']);
      }
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  describe('the .deb', () => {
    it('has the metadata: Depends on nodejs >= 20 and the native addons’ libraries, Homepage, License, Maintainer', async () => {
      const field = async (f: string) => (await runOk('dpkg-deb', ['-f', deb, f])).trim();
      expect(await field('Package')).toBe('oxyctl');
      expect(await field('Version')).toBe(VERSION);
      expect(await field('Architecture')).toBe(DEB_ARCH);
      const depends = (await field('Depends')).split(/,\s*/);
      expect(depends[0]).toBe('nodejs (>= 20)');
      // From dpkg-shlibdeps on the native addons (our own with ngtcp2 + GnuTLS, better-sqlite3, quiche).
      expect(depends).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^libc6 \(>= 2\.\d+\)$/),
          expect.stringMatching(/^libstdc\+\+6 \(>= /),
          expect.stringMatching(/^libngtcp2-9 \(>= /),
          expect.stringMatching(/^libngtcp2-crypto-gnutls2 \(>= /),
          expect.stringMatching(/^libgnutls30 \(>= /),
        ]),
      );
      expect(await field('Homepage')).toBe('https://github.com/oxyctl/oxyctl');
      expect(await field('License')).toBe('Apache-2.0');
      expect(await field('Maintainer')).toMatch(/^.+ <[^@\s]+@[^@\s]+>$/);
      expect(await field('Section')).toBe('net');
      expect(await field('Description')).toMatch(/^self-hostable private networking tunnels and edge proxy\n oxyctl is a self-hostable/);
      expect(Number(await field('Installed-Size'))).toBeGreaterThan(5_000);
    });

    it('ships the CLI with production dependencies only, native addons, man pages, units and docs', async () => {
      const files = (await runOk('sh', ['-c', 'dpkg-deb --fsys-tarfile "$0" | tar -t', deb])).split('\n').map((f) => f.replace(/^\.\//, '/'));
      for (const f of [
        '/usr/bin/oxyctl',
        '/usr/lib/oxyctl/bin/run.js',
        '/usr/lib/oxyctl/oclif.manifest.json',
        '/usr/lib/oxyctl/dist/commands/service/install.js',
        '/usr/lib/oxyctl/migrations/0001_init.sql',
        '/usr/lib/oxyctl/build/Release/oxy_native.node',
        '/usr/lib/oxyctl/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
        '/usr/lib/oxyctl/node_modules/@oclif/core/package.json',
        '/usr/share/man/man1/oxyctl.1.gz',
        '/usr/share/man/man1/oxyctl-service-install.1.gz',
        '/lib/systemd/system/oxyctl.service',
        '/lib/systemd/system/oxyctl-edge.service',
        '/usr/share/doc/oxyctl/copyright',
        '/usr/share/doc/oxyctl/changelog.gz',
      ]) {
        expect(files).toContain(f);
      }
      for (const dev of ['vitest', 'typescript', 'oclif', 'fast-check', '@types/better-sqlite3']) {
        expect(files.some((f) => f.startsWith(`/usr/lib/oxyctl/node_modules/${dev}/`))).toBe(false);
      }
      // No TypeScript sources or source maps of ours, no build objects anywhere.
      expect(files.filter((f) => !f.includes('/node_modules/') && /\.(ts|map)$/.test(f))).toEqual([]);
      expect(files.filter((f) => /\.(o|a|mk|gypi|cc|h)$/.test(f))).toEqual([]);
      expect(files.some((f) => f.includes('/better-sqlite3/deps/'))).toBe(false);
      expect(files.filter((f) => f.startsWith('/usr/share/man/man1/') && f.endsWith('.1.gz')).length).toBe(
        readdirSync(join(ROOT, 'man')).filter((f) => f.endsWith('.1')).length,
      );
    });

    it('lintian reports no errors', async () => {
      const r = await run('lintian', ['--fail-on', 'error', '--no-tag-display-limit', deb]);
      const lines = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /^[EWIP]: /.test(l));
      // Warnings are allowed; they show in the test log.
      if (lines.length) console.log(`lintian:\n${lines.join('\n')}`);
      expect(lines.filter((l) => l.startsWith('E: '))).toEqual([]);
      expect(r.code).toBe(0);
    }, 360_000);
  });

  describe('the apt repository', () => {
    const sources = (dir: string, keyring: string) => `deb [signed-by=${keyring}] ${server.url}/${dir}/deb stable main`;

    it('is laid out as apt expects, signed inline (InRelease) and detached (Release.gpg)', async () => {
      const dists = join(repo, 'deb/dists/stable');
      for (const f of ['Release', 'InRelease', 'Release.gpg', 'main/binary-amd64/Packages', 'main/binary-amd64/Packages.gz']) {
        expect(existsSync(join(dists, f))).toBe(true);
      }
      expect(existsSync(join(repo, `deb/pool/main/o/oxyctl/oxyctl_${VERSION}_${DEB_ARCH}.deb`))).toBe(true);
      const release = readFileSync(join(dists, 'Release'), 'utf8');
      expect(release).toMatch(/^Codename: stable$/m);
      expect(release).toMatch(/^Architectures: amd64$/m);
      expect(release).toMatch(
        new RegExp(
          `^ ${createHash('sha256')
            .update(readFileSync(join(dists, 'main/binary-amd64/Packages')))
            .digest('hex')} +\\d+ main/binary-amd64/Packages$`,
          'm',
        ),
      );
      const key = join(repo, 'oxyctl-archive-keyring.gpg');
      await runOk('gpgv', ['--keyring', key, join(dists, 'Release.gpg'), join(dists, 'Release')]);
      await runOk('gpgv', ['--keyring', key, join(dists, 'InRelease')]);
      expect(readFileSync(join(repo, 'oxyctl.list'), 'utf8')).toBe(
        'deb [signed-by=/usr/share/keyrings/oxyctl-archive-keyring.gpg] http://127.0.0.1:1/deb stable main\n',
      );
    });

    it('apt-get update and apt-get install oxyctl from it; the installed oxyctl runs with the system node and man reads its page', async () => {
      const { env, root } = aptRoot(
        join(work, 'apt-good'),
        sources('good', join(repo, 'oxyctl-archive-keyring.gpg')),
        HOST_DEPS(hostVersion('nodejs', '20.20.2-1')),
      );
      const update = await run('apt-get', ['update'], { env });
      expect(update.stderr).toBe('');
      expect(update.code).toBe(0);
      expect(update.stdout).toContain(`Get:1 ${server.url}/good/deb stable InRelease`);
      expect(await runOk('apt-cache', ['policy', 'oxyctl'], { env })).toMatch(new RegExp(`Candidate: ${VERSION.replace(/\./g, '\\.')}\\n`));

      const install = await run('apt-get', ['install', '-y', 'oxyctl'], { env });
      expect(install.code, install.stderr).toBe(0);
      expect(install.stdout).toContain(`Setting up oxyctl (${VERSION})`);
      expect(server.requests).toContain(`/good/deb/pool/main/o/oxyctl/oxyctl_${VERSION}_${DEB_ARCH}.deb`);
      // dpkg recorded it, and every file matches its md5sums.
      await runOk('dpkg', [`--root=${root}`, '--verify', 'oxyctl']);

      const system = { PATH: '/usr/bin:/bin', OXY_HOME: join(work, 'home'), NO_COLOR: '1' };
      expect((await runOk(join(root, 'usr/bin/oxyctl'), ['--version'], { env: system })).trim()).toMatch(
        new RegExp(`^oxyctl/${VERSION.replace(/\./g, '\\.')} linux-x64 node-v2\\d\\.`),
      );
      // The store (better-sqlite3's addon) and our addon load from the installed tree.
      expect(await runOk(join(root, 'usr/bin/oxyctl'), ['vnet', 'add', 'pkg-vnet'], { env: system })).toContain(
        "Successfully added virtual 'network' pkg-vnet",
      );
      const native = await runOk(
        '/usr/bin/node',
        ['--input-type=module', '-e', "const n = await import('./dist/engine/native/index.js'); console.log(n.nativeAvailable())"],
        {
          cwd: join(root, 'usr/lib/oxyctl'),
        },
      );
      expect(native.trim()).toBe('true');
      const page = await runOk('man', ['oxyctl'], { env: { MANPATH: join(root, 'usr/share/man'), MANWIDTH: '100', MANPAGER: 'cat', PAGER: 'cat' } });
      expect(page).toMatch(/^NAME\n +oxyctl +- +Self-hostable +private +networking/m);
      expect(page).toContain('oxyctl service install');
      const unit = readFileSync(join(root, 'lib/systemd/system/oxyctl.service'), 'utf8');
      expect(unit).toContain('ExecStart=/usr/bin/oxyctl tunnel run --config /etc/oxyctl/config.yml\n');

      const remove = await run('apt-get', ['remove', '--purge', '-y', 'oxyctl'], { env });
      expect(remove.code, remove.stderr).toBe(0);
      expect(existsSync(join(root, 'usr/lib/oxyctl'))).toBe(false);
      expect(existsSync(join(root, 'usr/bin/oxyctl'))).toBe(false);
    }, 360_000);

    it('apt refuses to install it next to Node.js 18', async () => {
      const { env } = aptRoot(join(work, 'apt-node18'), sources('good', join(repo, 'oxyctl-archive-keyring.gpg')), HOST_DEPS('18.20.4+dfsg-1~deb12u1'));
      await runOk('apt-get', ['update'], { env });
      const install = await run('apt-get', ['install', '-y', 'oxyctl'], { env });
      expect(install.code).toBe(100);
      expect(install.stdout).toMatch(/oxyctl : Depends: nodejs \(>= 20\) but 18\.20\.4\+dfsg-1~deb12u1 is to be installed/);
    }, 180_000);

    /** A copy of the served repository whose Packages (and .gz) says something else. */
    function tamperedCopy(dir: string): string {
      const dists = join(served, dir, 'deb/dists/stable');
      cpSync(repo, join(served, dir), { recursive: true });
      const packages = join(dists, 'main/binary-amd64/Packages');
      const text = readFileSync(packages, 'utf8').replace(/^Filename: .*$/m, 'Filename: pool/main/o/oxyctl/evil.deb');
      writeFileSync(packages, text);
      writeFileSync(`${packages}.gz`, gzipSync(text));
      return dists;
    }

    it('a tampered Packages file fails apt-get update: its hash does not match the signed Release', async () => {
      tamperedCopy('tampered');
      const { env } = aptRoot(join(work, 'apt-tampered'), sources('tampered', join(repo, 'oxyctl-archive-keyring.gpg')), HOST_DEPS('20.20.2-1'));
      const update = await run('apt-get', ['update'], { env });
      expect(update.code).toBe(100);
      expect(update.stderr).toMatch(
        /Failed to fetch .*\/tampered\/deb\/dists\/stable\/main\/binary-amd64\/Packages.* (File has unexpected size|Hash Sum mismatch)/,
      );
      expect(await runOk('apt-cache', ['policy', 'oxyctl'], { env })).not.toContain('Candidate: 0');
    }, 180_000);

    it('a tampered Packages file with the Release hashes rewritten fails apt-get update on the signature', async () => {
      const dists = tamperedCopy('resigned');
      // The attacker updates the hashes in InRelease and Release but cannot sign them.
      for (const name of ['InRelease', 'Release']) {
        let text = readFileSync(join(dists, name), 'utf8');
        for (const f of ['main/binary-amd64/Packages', 'main/binary-amd64/Packages.gz']) {
          const data = readFileSync(join(dists, f));
          for (const [alg, len] of [
            ['md5', 32],
            ['sha1', 40],
            ['sha256', 64],
          ] as const) {
            const line = new RegExp(`^ [0-9a-f]{${len}} +\\d+ ${f.replace(/[.+]/g, '\\$&')}$`, 'm');
            text = text.replace(line, ` ${createHash(alg).update(data).digest('hex')} ${data.length} ${f}`);
          }
        }
        writeFileSync(join(dists, name), text);
      }
      const { env } = aptRoot(join(work, 'apt-resigned'), sources('resigned', join(repo, 'oxyctl-archive-keyring.gpg')), HOST_DEPS('20.20.2-1'));
      const update = await run('apt-get', ['update'], { env });
      expect(update.code).toBe(100);
      expect(update.stderr).toMatch(/The following signatures were invalid: BADSIG/);
      expect(update.stderr).toMatch(/The repository '.*\/resigned\/deb stable InRelease' is not signed/);
      expect(await runOk('apt-cache', ['policy', 'oxyctl'], { env })).not.toContain('Candidate: 0');
    }, 180_000);

    it('a repository signed by another key fails apt-get update (signed-by pins the published key)', async () => {
      const otherHome = join(work, 'gnupg-other');
      const other = await throwawayKey(otherHome, 'someone else <else@oxyctl.example>');
      const otherKey = join(work, 'other.gpg');
      writeFileSync(otherKey, execFileSync('gpg', ['--batch', '--export', other], { env: { ...process.env, GNUPGHOME: otherHome } }));
      await run('gpgconf', ['--kill', 'all'], { env: { GNUPGHOME: otherHome } });
      const { env } = aptRoot(join(work, 'apt-otherkey'), sources('good', otherKey), HOST_DEPS('20.20.2-1'));
      const update = await run('apt-get', ['update'], { env });
      expect(update.code).toBe(100);
      expect(update.stderr).toMatch(/NO_PUBKEY|not signed/);
    }, 180_000);
  });

  describe('the yum repository', () => {
    it('the .rpm has the metadata, a signature by the repository key, and the files', async () => {
      const info = await runOk('rpm', ['-qip', rpm]);
      expect(info).toMatch(/^Name +: oxyctl$/m);
      expect(info).toMatch(new RegExp(`^Version +: ${VERSION.replace(/\./g, '\\.')}$`, 'm'));
      expect(info).toMatch(/^Architecture: x86_64$/m);
      expect(info).toMatch(/^License +: Apache-2\.0$/m);
      expect(info).toMatch(/^URL +: https:\/\/github\.com\/oxyctl\/oxyctl$/m);
      expect(info).toMatch(/^Packager +: .+ <.+@.+>$/m);
      expect(info).toMatch(/^Summary +: Self-hostable private networking tunnels and edge proxy$/m);
      const requires = (await runOk('rpm', ['-qpR', rpm])).split('\n');
      expect(requires).toContain('nodejs >= 20');
      expect(requires).toEqual(expect.arrayContaining(['libc.so.6()(64bit)', 'libstdc++.so.6()(64bit)']));
      const files = (await runOk('rpm', ['-qpl', rpm])).split('\n');
      for (const f of [
        '/usr/bin/oxyctl',
        '/usr/lib/oxyctl/bin/run.js',
        '/usr/lib/systemd/system/oxyctl.service',
        '/usr/lib/systemd/system/oxyctl-edge.service',
        '/usr/share/man/man1/oxyctl.1.gz',
      ]) {
        expect(files).toContain(f);
      }
      expect(files.some((f) => f.startsWith('/usr/lib/oxyctl/node_modules/vitest'))).toBe(false);
      // The copy in the repository is signed; the one npm run package built is not.
      expect(await runOk('rpm', ['-qip', join(repo, `rpm/oxyctl-${VERSION}.${RPM_ARCH}.rpm`)])).toMatch(/^Signature +: RSA\/SHA\d+, .+, Key ID [0-9a-f]{16}$/m);
    });

    it('repomd.xml is signed; dnf reads the repository with gpgcheck and repo_gpgcheck; the package installs with rpm --root, signature required', async () => {
      const repodata = join(repo, 'rpm/repodata');
      expect(readFileSync(join(repodata, 'repomd.xml'), 'utf8')).toMatch(/<data type="primary">/);
      await runOk('gpgv', ['--keyring', join(repo, 'oxyctl-archive-keyring.gpg'), join(repodata, 'repomd.xml.asc'), join(repodata, 'repomd.xml')]);

      const dnf = dnfRoot(join(work, 'dnf-good'), `${server.url}/good/rpm`, join(repo, 'oxyctl-archive-keyring.asc'));
      await runOk('dnf', [...dnf.args, 'makecache']);
      expect(server.requests).toContain('/good/rpm/repodata/repomd.xml.asc');
      const info = await runOk('dnf', [...dnf.args, '-q', 'info', 'oxyctl']);
      expect(info).toMatch(new RegExp(`^Version +: ${VERSION.replace(/\./g, '\\.')}$`, 'm'));
      expect(info).toMatch(/^Repository +: oxyctl$/m);
      const location = (await runOk('dnf', [...dnf.args, '-q', 'repoquery', '--location', 'oxyctl'])).trim();
      expect(location).toBe(`${server.url}/good/rpm/oxyctl-${VERSION}.${RPM_ARCH}.rpm`);

      const downloaded = join(work, 'downloaded.rpm');
      writeFileSync(downloaded, Buffer.from(await (await fetch(location)).arrayBuffer()));
      const root = join(work, 'rpm-root');
      mkdirSync(root);
      await runOk('rpm', ['--root', root, '--initdb']);
      await runOk('rpm', ['--root', root, '--import', join(repo, 'oxyctl-archive-keyring.asc')]);
      expect(await runOk('rpm', ['--root', root, '-K', downloaded])).toMatch(/digests signatures OK/);
      await runOk('rpm', ['--root', root, '--define', '_pkgverify_level signature', '--nodeps', '-i', downloaded]);
      expect((await runOk(join(root, 'usr/bin/oxyctl'), ['--version'], { env: { PATH: '/usr/bin:/bin' } })).trim()).toMatch(/^oxyctl\/\S+ linux-x64 node-v/);
      await runOk('rpm', ['--root', root, '-e', 'oxyctl']);
      expect(existsSync(join(root, 'usr/lib/oxyctl'))).toBe(false);
    }, 360_000);

    it('dnf refuses repodata whose repomd.xml does not match its signature', async () => {
      cpSync(repo, join(served, 'yum-tampered'), { recursive: true });
      const repomd = join(served, 'yum-tampered/rpm/repodata/repomd.xml');
      writeFileSync(
        repomd,
        readFileSync(repomd, 'utf8').replace(/<revision>(\d+)<\/revision>/, (_, n) => `<revision>${Number(n) + 1}</revision>`),
      );
      const dnf = dnfRoot(join(work, 'dnf-tampered'), `${server.url}/yum-tampered/rpm`, join(repo, 'oxyctl-archive-keyring.asc'));
      const r = await run('dnf', [...dnf.args, 'makecache']);
      expect(r.code).not.toBe(0);
      expect(`${r.stdout}${r.stderr}`).toMatch(/GPG verification|signature|Bad GPG/i);
    }, 180_000);
  });
}

if (missingTools.length || !built) {
  const why = !built ? 'the project is not built (npm run build, node-gyp)' : `missing tools: ${missingTools.join(', ')} (bash scripts/setup.sh installs them)`;
  if (privilegedTestsRequired) {
    describe('packaging', () => {
      it('has the tools it needs', () => {
        throw new Error(`OXY_REQUIRE_PRIVILEGED_TESTS=1 but ${why}`);
      });
    });
  } else {
    describe.skip(`packaging (skipped: ${why})`, body);
  }
} else {
  privilegedDescribe('packaging: .deb/.rpm, signed apt and yum repositories, installed by apt-get and rpm', body, ['root']);
}
