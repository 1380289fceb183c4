// Private TCP flows on reused tunnel streams (feature tcp-flows/1, protocol/tcp-flows.ts): many
// short flows share a few streams, and a flow's end — a half-close either way, a reset either
// way, a failed dial — leaves the stream fit for the next flow. A connector that does not
// announce the feature gets a stream per flow, as before.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { edgeCounter, startVnetSiteWithHost, type VnetSite } from '../../helpers/vnet-site.js';

// In the data centre: 9100 answers after the client's FIN with what it got; 9101 resets the
// connection at its first bytes; 9103 logs how a client's connection ended; 9104 sends up to
// 64 MiB as fast as it is read and logs how its writes ended; 9105 says bye and ends first, and
// logs how the client's side ended.
const HOST = `
const net = require('net');
net.createServer((s) => {
  let n = 0;
  s.on('data', (c) => (n += c.length));
  s.on('end', () => s.end('got ' + n));
}).listen(9100, '198.18.0.10');
net.createServer((s) => s.once('data', () => s.resetAndDestroy())).listen(9101, '198.18.0.10');
net.createServer((s) => {
  s.on('error', (e) => console.log('host saw ' + e.code));
  s.on('end', () => console.log('host saw end'));
  s.resume();
}).listen(9103, '198.18.0.10', () => console.log('listening'));
net.createServer((s) => {
  const chunk = Buffer.alloc(1 << 20);
  let sent = 0;
  s.on('error', (e) => console.log('writer saw ' + e.code));
  const more = () => {
    while (sent < 64 << 20) {
      sent += chunk.length;
      if (!s.write(chunk)) return void s.once('drain', more);
    }
    s.end();
  };
  more();
}).listen(9104, '198.18.0.10');
net.createServer((s) => {
  s.on('error', (e) => console.log('closer saw ' + e.code));
  s.on('end', () => console.log('closer saw end'));
  s.resume();
  s.end('bye');
}).listen(9105, '198.18.0.10');
`;

// On the device: `seq N` makes N flows one after another (16 bytes then FIN each; each answer
// checked); `rst` is reset by the host; `refused` dials a closed port; `nohost` an address the
// data centre has no route to (or no host at); `abort` resets its own flow;
// `stall` reads nothing of a download for 1.5 s (the edge pauses the flow's stream), then resets it;
// `early-abort` resets its flow to the no-host address while the connector still dials it;
// `hold` keeps a flow open for N ms, then ends it.
const CLIENT = `
const net = require('net');
const [mode, n] = [process.argv[1], Number(process.argv[2] || 0)];
const one = (i) => new Promise((resolve, reject) => {
  const s = net.connect(9100, '198.18.0.10');
  let answer = '';
  s.on('data', (d) => (answer += d));
  s.on('end', () => (answer === 'got ' + (16 + i) ? resolve() : reject(new Error('flow ' + i + ' answered ' + answer))));
  s.on('error', reject);
  s.end(Buffer.alloc(16 + i, i));
});
const outcome = (port) => new Promise((resolve) => {
  const s = net.connect(port, '198.18.0.10');
  s.on('connect', () => s.write('hello'));
  s.on('error', (e) => resolve(e.code));
  s.on('end', () => resolve('end'));
  s.resume();
});
(async () => {
  if (mode === 'seq') { for (let i = 0; i < n; i++) await one(i); console.log('ok ' + n); }
  else if (mode === 'up') { await Promise.all([0, 1, 2, 3].map((i) => one(n + i))); console.log('ok'); }
  else if (mode === 'rst') console.log(await outcome(9101));
  else if (mode === 'refused') console.log(await outcome(9199));
  else if (mode === 'nohost') {
    const s = net.connect(9100, '198.18.0.77');
    s.on('error', (e) => console.log(e.code));
    s.on('end', () => console.log('end'));
  }
  else if (mode === 'early-abort') {
    const s = net.connect(9100, '198.18.0.77');
    s.on('connect', () => s.write('hello', () => setTimeout(() => { s.resetAndDestroy(); console.log('reset'); }, 300)));
    s.on('error', () => undefined);
  }
  else if (mode === 'closer') {
    const s = net.connect(9105, '198.18.0.10');
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => console.log(got));
  }
  else if (mode === 'hold') {
    const s = net.connect(9103, '198.18.0.10');
    s.on('connect', () => s.write('hello', () => setTimeout(() => { s.end(); console.log('held'); }, n)));
  }
  else if (mode === 'abort') {
    const s = net.connect(9103, '198.18.0.10');
    s.on('connect', () => s.write('hello', () => setTimeout(() => { s.resetAndDestroy(); console.log('reset'); }, 200)));
    s.on('error', () => undefined);
  } else if (mode === 'stall') {
    const s = net.connect(9104, '198.18.0.10');
    s.pause();
    s.on('error', () => undefined);
    s.on('connect', () => setTimeout(() => { s.resetAndDestroy(); console.log('reset'); }, 1500));
  }
})().catch((e) => { console.log(e.message); process.exit(1); });
`;

const flows = (site: VnetSite) => {
  const count = edgeCounter(site, 'oxy_edge_tcp_flows_total');
  return { reused: count('reused'), new: count('new') };
};

/** After one flow ended as `mode` did, five more ride reused streams. */
const nextFlowsReused = async (site: VnetSite) => {
  const before = flows(site);
  expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'seq', '5'])).stdout.trim()).toBe('ok 5');
  expect(flows(site).reused - before.reused).toBeGreaterThanOrEqual(4);
};

/** The device resets its flow: the host sees a reset (not an end), and the stream serves the next flows. */
const deviceReset = async (site: VnetSite, host: ReturnType<VnetSite['spawnIn']>) => {
  expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'abort'])).stdout.trim()).toBe('reset');
  await host.waitFor(/host saw ECONNRESET/, 10_000);
  await nextFlowsReused(site);
};

/** A download the device stops reading (its stream paused for backpressure) and then resets: the host hears the reset. */
const stalledReset = async (site: VnetSite, host: ReturnType<VnetSite['spawnIn']>) => {
  expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'stall'], { timeoutMs: 15_000 })).stdout.trim()).toBe('reset');
  await host.waitFor(/writer saw (ECONNRESET|EPIPE)/, 10_000);
  await nextFlowsReused(site);
};

privilegedDescribe('private TCP flows on reused tunnel streams', () => {
  describe('a connector that serves tcp-flows/1', () => {
    let site: VnetSite;
    let host: ReturnType<VnetSite['spawnIn']>;
    beforeAll(async () => {
      ({ site, host } = await startVnetSiteWithHost(HOST));
    });
    afterAll(async () => {
      await site?.close();
    });

    it('30 flows one after another ride one stream, each answered whole after its FIN', async () => {
      const before = flows(site);
      const r = await site.inDevice(process.execPath, ['-e', CLIENT, 'seq', '30']);
      expect(r.stdout.trim()).toBe('ok 30');
      const after = flows(site);
      expect(after.reused + after.new - before.reused - before.new).toBe(30);
      // One flow at a time: the stream of the previous one is back in the pool for the next.
      expect(after.new - before.new).toBeLessThanOrEqual(2);
    }, 30_000);

    it("a host's reset reaches the device, and the stream serves the next flows", async () => {
      const r = await site.inDevice(process.execPath, ['-e', CLIENT, 'rst']);
      expect(r.stdout.trim()).toBe('ECONNRESET');
      const before = flows(site);
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'seq', '5'])).stdout.trim()).toBe('ok 5');
      expect(flows(site).reused - before.reused).toBeGreaterThanOrEqual(4);
    }, 30_000);

    it('a dial the connector cannot make resets the device, and the stream serves the next flows', async () => {
      const r = await site.inDevice(process.execPath, ['-e', CLIENT, 'refused']);
      expect(r.stdout.trim()).toBe('ECONNRESET');
      await site.edge.waitFor(/could not reach the flow's destination: connect ECONNREFUSED 198\.18\.0\.10:9199/);
      const before = flows(site);
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'seq', '5'])).stdout.trim()).toBe('ok 5');
      expect(flows(site).reused - before.reused).toBeGreaterThanOrEqual(4);
    }, 30_000);

    it("the device's reset reaches the host as a reset, and the stream serves the next flows", async () => {
      await deviceReset(site, host);
    }, 30_000);

    it("a device's reset while its stream is paused for backpressure reaches the host, and the stream serves the next flows", async () => {
      await stalledReset(site, host);
    }, 40_000);
  });

  // The connector's QUIC pump reads and writes each flow's records natively (connector/tcp-flows.ts PumpedFlow);
  // on quiche the same cases run through the JS relays.
  describe('over QUIC, the flows pumped by the connector', () => {
    let site: VnetSite;
    let host: ReturnType<VnetSite['spawnIn']>;
    beforeAll(async () => {
      ({ site, host } = await startVnetSiteWithHost(HOST, {
        protocol: 'quic',
        connectorEnv: { NODE_DEBUG: 'oxy:transport:flow-pump,oxy:connector:tcp-flows' },
        // Short, so that a test can wait for a flow's keep-alive (set late by the addon's dial: OXY_DIAL_KEEPALIVE_LATE).
        warpRouting: ['tcpKeepAlive: 2s'],
      }));
      // No host at 198.18.0.77, but a route: its SYN waits for an ARP answer that never comes, so a
      // dial to it stays under way until its timeout. Without the route the dial failed at once
      // (ENETUNREACH), and early-abort's reset raced the refusal: the device could hear the edge's
      // reset before its event loop saw the connect, and print nothing.
      site.dc.ip('route', 'add', '198.18.0.77/32', 'dev', 'to-edge');
    });
    afterAll(async () => {
      await site?.close();
    });

    it('flows one after another and four of 3 MiB at once, each answered whole', async () => {
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'seq', '20'])).stdout.trim()).toBe('ok 20');
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'up', String(3 * 1024 * 1024)], { timeoutMs: 30_000 })).stdout.trim()).toBe('ok');
      const counted = flows(site);
      expect(counted.reused + counted.new).toBe(20 + 4);
      expect(counted.reused).toBeGreaterThanOrEqual(20);
      // The addon pumps the flows only where the connector's QUIC is ngtcp2 (connector/tcp-flows.ts
      // PUMP_FLOWS); on quiche (OXY_QUIC_IMPL=quiche) JS relays them, and the flows above must be the same.
      const client = /quicClient=(\w+)/.exec(site.connector.output)?.[1];
      expect(client).toMatch(/^(ngtcp2|quiche)$/);
      if (client === 'ngtcp2') expect(site.connector.output).toMatch(/tcp-flows flow pumped by the addon, dialled there/);
      // From the flow's OPEN on, the addon answering at the connect (OXY_FLOW_AT_CONNECT=0: JS at the dial's end).
      if (client === 'ngtcp2' && process.env.OXY_FLOW_AT_CONNECT !== '0') expect(site.connector.output).toMatch(/dialled there, from its connect/);
      // A reused stream's OPENs read by the addon, not the stream's reader (OXY_FLOW_OPEN_NATIVE=0: by the reader).
      const openNative = client === 'ngtcp2' && process.env.OXY_FLOW_AT_CONNECT !== '0' && process.env.OXY_FLOW_OPEN_NATIVE !== '0';
      if (openNative) expect(site.connector.output).toMatch(/an OPEN read by the addon/);
      else expect(site.connector.output).not.toMatch(/an OPEN read by the addon/);
    }, 60_000);

    it("a flow that stays open gets the connector's TCP keep-alive (warp-routing.tcpKeepAlive) on its host socket", async () => {
      const held = site.inDevice(process.execPath, ['-e', CLIENT, 'hold', '3000']);
      // The connector's socket to the host (the host's own has no keep-alive): its keep-alive timer runs.
      const keepAlive = () => site.dc.exec('ss', ['-Htno', 'state', 'established', 'dport', '=', ':9103']);
      let seen = '';
      for (let i = 0; i < 50 && !/timer:\(keepalive,/.test(seen); i++) {
        await new Promise((r) => setTimeout(r, 50));
        seen = keepAlive();
      }
      expect(seen).toMatch(/timer:\(keepalive,/);
      expect((await held).stdout.trim()).toBe('held');
      await host.waitFor(/host saw end/, 10_000);
    }, 30_000);

    it("a host that ends first hears the device's end as an end (the connector's FIN, not a reset)", async () => {
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'closer'])).stdout.trim()).toBe('bye');
      await host.waitFor(/closer saw (end|E\w+)/, 10_000);
      expect(host.output).toMatch(/closer saw end/);
      expect(host.output).not.toMatch(/closer saw E/);
      await nextFlowsReused(site);
    }, 30_000);

    it("the device's reset before its flow was answered (the dial under way): the stream serves the next flows", async () => {
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'early-abort'])).stdout.trim()).toBe('reset');
      await nextFlowsReused(site);
    }, 30_000);

    it("a host's reset reaches the device as a reset; a failed dial too; the stream serves the next flows", async () => {
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'rst'])).stdout.trim()).toBe('ECONNRESET');
      await nextFlowsReused(site);
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'refused'])).stdout.trim()).toBe('ECONNRESET');
      // The addon's dial fails as Node's net.connect does, in the same words.
      await site.edge.waitFor(/could not reach the flow's destination: connect ECONNREFUSED 198\.18\.0\.10:9199/);
      await nextFlowsReused(site);
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'nohost'], { timeoutMs: 15_000 })).stdout.trim()).toBe('ECONNRESET');
      await site.edge.waitFor(
        /could not reach the flow's destination: (dial tcp 198\.18\.0\.77:9100: i\/o timeout after 2000 ms|connect E(HOST|NET)UNREACH 198\.18\.0\.77:9100)/,
      );
      await nextFlowsReused(site);
    }, 40_000);

    it("the device's reset reaches the host as a reset, and the stream serves the next flows", async () => {
      await deviceReset(site, host);
    }, 30_000);

    it("a device's reset while its stream is paused for backpressure reaches the host, and the stream serves the next flows", async () => {
      await stalledReset(site, host);
    }, 40_000);
  });

  // A stream per flow, pumped by the addon at both ends (transport/flow-pump.ts pumpFlow).
  describe('over QUIC, a stream per flow (a connector that does not announce tcp-flows/1)', () => {
    let site: VnetSite;
    beforeAll(async () => {
      ({ site } = await startVnetSiteWithHost(HOST, { protocol: 'quic', connectorEnv: { OXY_TCP_FLOWS: '0' } }));
    });
    afterAll(async () => {
      await site?.close();
    });

    it("a host's reset reaches the device as a reset", async () => {
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'rst'])).stdout.trim()).toBe('ECONNRESET');
      expect((await site.inDevice(process.execPath, ['-e', CLIENT, 'seq', '3'])).stdout.trim()).toBe('ok 3');
    }, 30_000);
  });

  describe('a connector that does not announce tcp-flows/1 (an older peer)', () => {
    let site: VnetSite;
    beforeAll(async () => {
      ({ site } = await startVnetSiteWithHost(HOST, { connectorEnv: { OXY_TCP_FLOWS: '0' } }));
    });
    afterAll(async () => {
      await site?.close();
    });

    it('gets a stream per flow, and every flow is answered', async () => {
      const r = await site.inDevice(process.execPath, ['-e', CLIENT, 'seq', '10']);
      expect(r.stdout.trim()).toBe('ok 10');
      expect(flows(site)).toEqual({ reused: 0, new: 0 });
    }, 30_000);
  });
});
