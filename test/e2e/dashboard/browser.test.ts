/**
 * The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core):
 * log in, watch a tunnel go from down to healthy when its connector starts, add a route and
 * find it in `oxyctl tunnel route ip show`, watch the request counter move while curl sends
 * traffic, and revoke a connected device and see it cut. Screenshots of each view go to
 * test-results/dashboard/ (not committed) for a reviewer.
 *
 *   edge ns: edge (dashboard on 127.0.0.1), connector, curl, Chromium ──veth 198.18.90.0/30── device ns: warp connect --token
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, ROOT, oxyJson, oxyOk, tempHome } from '../../helpers/cli.js';
import { TestNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { NsProcess } from '../../helpers/vnet-site.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(ROOT, 'test-results', 'dashboard');
const TUNNEL_PORT = 7844;
/** How long a polled condition may take: the machine may be busy (vitest's default is 1 s). */
const POLL = { timeout: 10_000 };

privilegedDescribe('dashboard in a browser', () => {
  let home: string;
  let cleanup: () => void;
  let edgeNs: TestNetns;
  let deviceNs: TestNetns;
  let browser: Browser;
  let page: Page;
  let token: string;
  let base: string;
  const procs: NsProcess[] = [];
  const env = () => ({ ...process.env, OXY_HOME: home, NO_COLOR: '1' });
  const oxyIn = (ns: TestNetns, args: string[]) => {
    const p = new NsProcess(ns.spawn(process.execPath, [BIN, ...args], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] }));
    procs.push(p);
    return p;
  };
  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const curl = (n: number) => {
    for (let i = 0; i < n; i++)
      expect(edgeNs.exec('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: app.example.com', `http://127.0.0.1:${httpPort}/`])).toBe('200');
  };
  let httpPort: number;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/setup.sh (Debian package chromium)`);
    mkdirSync(SHOTS, { recursive: true });
    ({ home, cleanup } = tempHome());
    edgeNs = TestNetns.create('oxydash');
    deviceNs = TestNetns.create('oxydashdev');
    edgeNs.veth('to-dev', deviceNs, 'to-edge');
    edgeNs.ip('addr', 'add', '198.18.90.1/30', 'dev', 'to-dev');
    deviceNs.ip('addr', 'add', '198.18.90.2/30', 'dev', 'to-edge');

    token = (await oxyJson<{ token: string }>(home, ['edge', 'dashboard-token'])).token;
    await oxyOk(home, ['tunnel', 'create', 'web']);
    await oxyOk(home, ['tunnel', 'create', 'backup']);
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
    await oxyOk(home, ['vnet', 'add', '--default', 'office', 'Head office']);
    await oxyOk(home, ['vnet', 'add', 'lab', 'Test lab']);
    await oxyOk(home, ['edge', 'init', '--ip', '127.0.0.1', '--ip', '198.18.90.1', '--advertise', `198.18.90.1:${TUNNEL_PORT}`]);
    const edge = oxyIn(edgeNs, [
      'edge',
      'run',
      '--tunnel-listen',
      `0.0.0.0:${TUNNEL_PORT}`,
      '--http-listen',
      '127.0.0.1:0',
      '--metrics',
      '127.0.0.1:0',
      '--ip-tunnel-listen',
      join(home, 'ip.sock'),
      '--dashboard-listen',
      '127.0.0.1:0',
    ]);
    base = (await edge.waitFor(/Dashboard ready .*url=(http:\/\/127\.0\.0\.1:\d+)\//))[1];
    httpPort = Number((await edge.waitFor(/Public HTTP listener ready address=127\.0\.0\.1:(\d+)/))[1]);

    // Chromium runs inside the edge's namespace, where the dashboard listens on loopback.
    const wrapper = join(home, 'chromium-in-ns.sh');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${edgeNs.name} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
    browser = await chromium.launch({
      executablePath: wrapper,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  });

  afterAll(async () => {
    await browser?.close();
    await Promise.all(procs.map((p) => p.stop()));
    edgeNs?.delete();
    deviceNs?.delete();
    cleanup?.();
  });

  it('logs in with the keyboard (a wrong token is refused) and shows the tunnel down', async () => {
    await page.goto(base);
    await shot('01-login');
    await page.getByLabel('Dashboard token').fill('oxyd_wrong');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByRole('alert').textContent(), POLL).toContain('oxyctl edge dashboard-token');
    await page.getByLabel('Dashboard token').fill(token);
    await page.keyboard.press('Enter');
    const web = page.locator('tr[data-tunnel="web"] [data-status]');
    await web.waitFor();
    expect(await web.getAttribute('data-status')).toBe('down');
  }, 60_000);

  it('shows the tunnel go from down to healthy when its connector starts, with its connections', async () => {
    oxyIn(edgeNs, ['tunnel', 'run', '--edge', `127.0.0.1:${TUNNEL_PORT}`, '--protocol', 'http2', '--ha-connections', '2', '--hello-world', 'web']);
    await page.locator('tr[data-tunnel="web"] [data-status="healthy"]').waitFor({ timeout: 20_000 });
    await page.getByRole('button', { name: 'web' }).click();
    const conns = page.getByRole('table', { name: 'Connections of web' });
    await expect.poll(() => conns.locator('tbody tr').count(), POLL).toBe(2);
    expect(await conns.textContent()).toContain('http2');
    await shot('02-tunnels');
  }, 60_000);

  it('adds a route that the CLI then shows; a second add shows the CLI 1014 error', async () => {
    await page.getByRole('link', { name: 'Routes & vnets' }).click();
    const form = page.getByRole('form', { name: 'Add a route' });
    await form.getByLabel('Network', { exact: true }).fill('10.99.0.0/16');
    await form.getByLabel('Tunnel').selectOption({ label: 'web' });
    await form.getByLabel('Virtual network').selectOption({ label: 'lab' });
    await form.getByLabel('Comment').fill('added in the browser');
    await form.getByRole('button', { name: 'Add route' }).click();
    await page.locator('tr[data-route="10.99.0.0/16"]').waitFor();
    const shown = await oxyJson<{ network: string; tunnel_name: string; virtual_network_name: string; comment: string }[]>(home, [
      'tunnel',
      'route',
      'ip',
      'show',
    ]);
    expect(shown).toContainEqual(
      expect.objectContaining({ network: '10.99.0.0/16', tunnel_name: 'web', virtual_network_name: 'lab', comment: 'added in the browser' }),
    );
    await form.getByLabel('Network', { exact: true }).fill('10.99.0.0/16');
    await form.getByRole('button', { name: 'Add route' }).click();
    await expect.poll(() => page.getByRole('alert').textContent(), POLL).toContain('code: 1014');
    // The lookup box: which route serves an IP in a vnet.
    const lookup = page.getByRole('region', { name: 'Which route serves this IP?' });
    await lookup.getByLabel('IP').fill('10.99.7.7');
    await lookup.getByLabel('Virtual network').selectOption({ label: 'lab' });
    await lookup.getByRole('button', { name: 'Look up' }).click();
    await expect.poll(() => lookup.textContent(), POLL).toContain('goes through web by route 10.99.0.0/16 in lab');
    await shot('03-routes');
    // A vnet added here, given a route by the CLI: deleting it asks first, in the CLI's words.
    const vnetForm = page.getByRole('form', { name: 'Add a virtual network' });
    await vnetForm.getByLabel('Name').fill('scratch');
    await vnetForm.getByRole('button', { name: 'Add virtual network' }).click();
    await page.locator('tr[data-vnet="scratch"]').waitFor();
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'scratch', '10.98.0.0/16', 'backup']);
    await page.getByRole('button', { name: 'Delete virtual network scratch' }).click();
    await expect
      .poll(() => page.getByRole('region', { name: 'Virtual networks' }).getByRole('alert').textContent(), POLL)
      .toContain('is used by 1 IP route(s)');
    await page.getByRole('button', { name: 'Delete scratch with its routes' }).click();
    await page.locator('tr[data-vnet="scratch"]').waitFor({ state: 'detached' });
    expect(await oxyOk(home, ['tunnel', 'route', 'ip', 'show'])).not.toContain('10.98.0.0/16');
  }, 60_000);

  it('moves the request counter while curl sends traffic', async () => {
    // Keyboard: focus the Traffic link with Tab and open it with Enter.
    await page.getByRole('link', { name: 'Devices' }).focus();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Traffic');
    await page.keyboard.press('Enter');
    const counter = page.getByTestId('requests-total');
    await counter.waitFor();
    const before = Number(await counter.textContent());
    curl(12);
    await expect.poll(async () => Number(await counter.textContent()), POLL).toBe(before + 12);
    // Traffic keeps flowing so the chart has a line to show.
    curl(6);
    await expect.poll(async () => Number(await counter.textContent()), POLL).toBe(before + 18);
    expect(await page.locator('tr[data-hostname="app.example.com"]').textContent()).toContain('web');
    expect(await page.locator('.chart canvas').count()).toBe(2);
    await shot('04-traffic');
  }, 60_000);

  it('revokes a connected device, which the edge then cuts', async () => {
    const deviceToken = (await oxyOk(home, ['warp', 'enroll', 'laptop'])).trim();
    const warp = oxyIn(deviceNs, ['warp', 'connect', '--token', deviceToken, '--protocol', 'http2', '--vnet', 'lab', '--tun', 'oxydash0']);
    await warp.waitFor(/Connected to the edge/);
    await page.getByRole('link', { name: 'Devices' }).click();
    const row = page.locator('tr[data-device="laptop"]');
    await row.locator('[data-connected="true"]').waitFor({ timeout: 10_000 });
    expect(await row.textContent()).toContain('lab');
    await shot('05-devices');
    // Its packets make IP flows in its vnet (the edge answers them; nothing leaves the test's namespaces).
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'lab', '198.18.91.0/24', 'web']);
    await warp.waitFor(/Routes updated routes=.*198\.18\.91\.0\/24/);
    deviceNs.exec('sh', ['-c', 'ping -c 1 -W 1 198.18.91.5 >/dev/null 2>&1; true']);
    await page.getByRole('link', { name: 'Traffic' }).click();
    const flows = page.getByRole('table', { name: 'Active IP flows' });
    await expect.poll(() => flows.textContent(), POLL).toMatch(/lab\s*[1-9]/);
    await shot('06-traffic-flows');
    await page.getByRole('link', { name: 'Devices' }).click();
    await row.getByRole('button', { name: 'Revoke laptop' }).click();
    await row.getByRole('button', { name: 'Confirm revoke' }).click();
    await warp.waitFor(/The edge closed the IP tunnel: device revoked/, 10_000);
    await row.waitFor({ state: 'detached' });
    expect(await oxyOk(home, ['warp', 'devices'])).not.toContain('laptop');
  }, 60_000);
});
