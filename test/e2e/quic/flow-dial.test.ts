// The connector's dial at a tcp-flows OPEN (connector/private.ts admitOpen, cpp/quic-pump.cc
// Conn::AdmitOpen): an OPEN whose bytes the connector admitted before is dialled by the addon as it
// reads it, before the OPEN's JS. An in-process edge plays the edge's side of one tcp-flows stream
// (records written here, any destination) to a connector process over QUIC on ngtcp2, with hosts on
// 127.0.0.1 and 127.0.0.2 counting their connections: flows to the routed host are dialled there
// from the second on; an OPEN outside the routes is refused and never dialled; once the routes
// change, the bytes admitted before are refused and their host sees no connection (deny by
// default: the addon's admitted OPENs lapse with the routes). The addon attaches the flow's pump
// there too (its request written at the connect, without the OPEN's JS: OXY_FLOW_PUMP_AT_OPEN=0, by
// JS after the event); OXY_FLOW_DIAL_AT_OPEN=0: the same answers, every dial from JS.
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyJson, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess } from '../../helpers/processes.js';
import { Store } from '../../../src/store/index.js';
import { runEdge } from '../../../src/engine/edge/run.js';
import type { EdgeServer } from '../../../src/engine/edge/server.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import { decodeFlowHeader, FlowRecord, FlowRecordParser, writeFlowRecord, type FlowRecordSink } from '../../../src/engine/protocol/tcp-flows.js';
import { encodeRequestHeader, ResponseStatus } from '../../../src/engine/protocol/stream-header.js';
import type { TunnelStream } from '../../../src/engine/transport/types.js';

interface FlowResult {
  status: number;
  got: string;
  term: 'end' | 'reset';
}

/** The edge's side of a tcp-flows stream: one flow at a time, each an OPEN, "ping" and its END. */
class FlowClient implements FlowRecordSink {
  readonly #parser = new FlowRecordParser(this, FlowRecord.ANSWER);
  #status = -1;
  #got: Buffer[] = [];
  #done: ((r: FlowResult) => void) | undefined;

  constructor(readonly stream: TunnelStream) {
    stream.on('data', (c: Buffer) => this.#parser.push(c));
    stream.on('error', () => undefined);
  }

  flow(open: Buffer): Promise<FlowResult> {
    this.#status = -1;
    this.#got = [];
    const done = new Promise<FlowResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer and end in 10 s')), 10_000);
      this.#done = (r) => (clearTimeout(timer), resolve(r));
    });
    writeFlowRecord(this.stream, FlowRecord.OPEN, open);
    writeFlowRecord(this.stream, FlowRecord.DATA, Buffer.from('ping\n'));
    writeFlowRecord(this.stream, FlowRecord.END, Buffer.alloc(0));
    return done;
  }

  header(_type: number, payload: Buffer): void {
    this.#status = decodeFlowHeader(payload, 'response').status;
  }

  data(bytes: Buffer): void {
    this.#got.push(Buffer.from(bytes));
  }

  end(): void {
    this.#finish('end');
  }

  reset(): void {
    this.#finish('reset');
  }

  #finish(term: 'end' | 'reset'): void {
    const done = this.#done;
    this.#done = undefined;
    done?.({ status: this.#status, got: Buffer.concat(this.#got).toString(), term });
  }
}

describe.each([
  ['dialled and pumped at the OPEN', { dial: true, pump: true }, {}],
  ['OXY_FLOW_PUMP_AT_OPEN=0', { dial: true, pump: false }, { OXY_FLOW_PUMP_AT_OPEN: '0' }],
  ['OXY_FLOW_DIAL_AT_OPEN=0', { dial: false, pump: false }, { OXY_FLOW_DIAL_AT_OPEN: '0' }],
] as const)('private TCP flows on one tcp-flows stream (ngtcp2 connector), %s', (_name, at, env) => {
  let home: string;
  let cleanup: () => void;
  let store: Store;
  let edge: EdgeServer;
  let connector: OxyProcess;
  let lab = '';
  let port = 0;
  const hosts: Server[] = [];
  /** Connections each host accepted, by its address. */
  const accepted: Record<string, number> = { '127.0.0.1': 0, '127.0.0.2': 0 };

  beforeAll(async () => {
    ({ home, cleanup } = tempHome());
    // Each host: "hi <its address>\n", an echo, and its end after the flow's.
    const host = (s: Socket) => {
      s.on('error', () => undefined);
      accepted[s.localAddress!]++;
      s.write(`hi ${s.localAddress}\n`);
      s.pipe(s);
    };
    hosts.push(createServer({ allowHalfOpen: true }, host));
    await new Promise<void>((r) => hosts[0]!.listen(0, '127.0.0.1', r));
    port = (hosts[0]!.address() as AddressInfo).port;
    hosts.push(createServer({ allowHalfOpen: true }, host));
    await new Promise<void>((r) => hosts[1]!.listen(port, '127.0.0.2', r));
    await oxyOk(home, ['vnet', 'add', 'lab']);
    await oxyOk(home, ['tunnel', 'create', 'dc1']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'lab', '127.0.0.1/32', 'dc1']);
    lab = (await oxyJson<{ id: string; name: string }[]>(home, ['vnet', 'list'])).find((v) => v.name === 'lab')!.id;
    store = await Store.open(home);
    edge = await runEdge({ home, store, log: createLogger({ level: 'silent' }), tunnelListen: '127.0.0.1:0', location: 'test' });
    connector = new OxyProcess(
      home,
      ['tunnel', 'run', '--edge', `127.0.0.1:${edge.tunnelAddresses[0]!.address.port}`, '--protocol', 'quic', '--ha-connections', '1', '--hello-world', 'dc1'],
      { OXY_QUIC_IMPL: 'ngtcp2', NODE_DEBUG: 'oxy:connector:tcp-flows,oxy:transport:quic', ...env },
    );
    await connector.waitFor(/Registered tunnel connection connIndex=0 [^\n]*protocol=quic/);
  }, 60_000);

  afterAll(async () => {
    await connector?.stop();
    await edge?.stop();
    await store?.close();
    for (const h of hosts) h.close();
    cleanup();
  });

  const open = (ip: string, to = port) => encodeRequestHeader({ kind: 'tcp', destination: `${ip}:${to}`, metadata: [['Vnet', lab]] });
  const dialledThere = () => connector.output.match(/an OPEN read by the addon, dialled there/g)?.length ?? 0;
  const pumpedThere = () => connector.output.match(/a flows pump attached by the addon at its OPEN/g)?.length ?? 0;

  it('dials admitted OPENs as they are read; refuses the rest, and the admitted bytes once the routes changed', async () => {
    const live = edge.egress.connectionFor(lab, Uint8Array.of(127, 0, 0, 1))!;
    expect(live).toBeDefined();
    const client = new FlowClient(await live.conn.openStream());
    client.stream.write(encodeRequestHeader({ kind: 'tcp-flows', destination: '', metadata: [] }));
    const ok = { status: ResponseStatus.OK, got: 'hi 127.0.0.1\nping\n', term: 'end' };
    const refused = { status: ResponseStatus.FORBIDDEN, got: '', term: 'reset' };

    // One flow after another to the routed host: the first OPEN admits its bytes, the next ones
    // (read by the addon between flows) are dialled there.
    for (let i = 0; i < 12; i++) expect(await client.flow(open('127.0.0.1'))).toEqual(ok);
    expect(accepted['127.0.0.1']).toBe(12);
    if (at.dial) expect(dialledThere()).toBeGreaterThanOrEqual(10);
    else expect(dialledThere()).toBe(0);
    if (at.pump) expect(pumpedThere()).toBeGreaterThanOrEqual(10);
    else expect(pumpedThere()).toBe(0);

    // A routed host with nothing listening: each dial fails (its connect refused inside the call,
    // where the addon dialled it), the edge hears DIAL_FAILED and a RESET, and the stream goes on.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const dialsBefore = dialledThere();
    for (let i = 0; i < 4; i++)
      expect(await client.flow(open('127.0.0.1', closedPort))).toMatchObject({ status: ResponseStatus.DIAL_FAILED, got: '', term: 'reset' });
    if (at.dial) expect(dialledThere() - dialsBefore).toBeGreaterThanOrEqual(2);
    expect(await client.flow(open('127.0.0.1'))).toEqual(ok);

    // Outside the routes: refused, never dialled, however often it comes.
    for (let i = 0; i < 3; i++) expect(await client.flow(open('127.0.0.2'))).toEqual(refused);
    expect(accepted['127.0.0.2']).toBe(0);
    const before = dialledThere();

    // The routes change: 127.0.0.1 out, then 127.0.0.2 in (the edge pushes them once it reloads:
    // 127.0.0.2 answered means the connector has the routes without 127.0.0.1).
    await oxyOk(home, ['tunnel', 'route', 'ip', 'delete', '--yes', '--vnet', 'lab', '127.0.0.1/32']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'lab', '127.0.0.2/32', 'dc1']);
    let moved: FlowResult | undefined;
    for (let i = 0; i < 100 && moved?.status !== ResponseStatus.OK; i++) {
      moved = await client.flow(open('127.0.0.2'));
      if (moved.status !== ResponseStatus.OK) await new Promise((r) => setTimeout(r, 100));
    }
    expect(moved).toEqual({ status: ResponseStatus.OK, got: 'hi 127.0.0.2\nping\n', term: 'end' });
    // The new routes are the connector's. 127.0.0.2 is still refused until they came; 127.0.0.1's
    // admitted bytes are refused now, and dialled neither here nor by the addon.
    for (let i = 0; i < 3; i++) expect(await client.flow(open('127.0.0.1'))).toEqual(refused);
    expect(accepted['127.0.0.1']).toBe(13);
    // The routed host's bytes are admitted anew: the next ones are dialled there again.
    for (let i = 0; i < 4; i++) expect(await client.flow(open('127.0.0.2'))).toEqual({ status: ResponseStatus.OK, got: 'hi 127.0.0.2\nping\n', term: 'end' });
    if (at.dial) expect(dialledThere() - before).toBeGreaterThanOrEqual(3);
    else expect(dialledThere()).toBe(0);
    if (!at.pump) expect(pumpedThere()).toBe(0);
    // Each flow the addon dialled at its OPEN was answered whole above, through whichever pump.
    if (at.pump) expect(pumpedThere()).toBe(dialledThere());
    expect(connector.child.exitCode).toBeNull();
  }, 60_000);
});
