import { afterEach, describe, expect, it } from 'vitest';
import { TunnelCloseCode } from '../../../src/engine/protocol/codes.js';
import { ControlChannel } from '../../../src/engine/protocol/control.js';
import { DatagramType, decodeDatagram, encodeDatagram, type TunnelDatagram } from '../../../src/engine/protocol/datagram.js';
import { errorOf, http2Pair, type Pair } from './helpers.js';
import { until } from '../../helpers/until.js';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

describe('HTTP/2 transport close and datagrams', () => {
  it('the peer sees the code and reason of a close, from either side', async () => {
    pair = await http2Pair();
    pair.edge.close(TunnelCloseCode.SHUTDOWN, 'edge restarting: lhr01 maintenance');
    expect(await pair.connector.closed).toEqual({
      code: TunnelCloseCode.SHUTDOWN,
      reason: 'edge restarting: lhr01 maintenance',
      remote: true,
    });
    expect(await pair.edge.closed).toMatchObject({ code: TunnelCloseCode.SHUTDOWN, remote: false });
    await pair.close();

    pair = await http2Pair();
    pair.connector.close(TunnelCloseCode.NO_ERROR, 'connector stopped ✓');
    expect(await pair.edge.closed).toEqual({ code: 0, reason: 'connector stopped ✓', remote: true });
  });

  it('open streams error and new opens fail once the connection closes', async () => {
    pair = await http2Pair();
    pair.connector.onStream((s) => {
      s.on('error', () => undefined);
      s.resume();
    });
    const stream = await pair.edge.openStream();
    stream.write('partial');
    const peerStreamError = new Promise<Error>((resolve) =>
      pair!.connector.onStream((s) => {
        s.resume();
        s.once('error', resolve);
      }),
    );
    const second = await pair.edge.openStream();
    second.on('error', () => undefined);
    second.write('x');
    await new Promise((r) => setTimeout(r, 50));
    const localError = errorOf(stream);
    pair.connector.close(TunnelCloseCode.SHUTDOWN, 'bye');
    expect(await localError).toMatchObject({ code: 'OXY_ERR_TUNNEL_CLOSED' });
    expect(await peerStreamError).toMatchObject({ code: 'OXY_ERR_TUNNEL_CLOSED' });
    await pair.edge.closed;
    await expect(pair.edge.openStream()).rejects.toMatchObject({ code: 'OXY_ERR_TUNNEL_CLOSED', message: 'Tunnel connection closed: bye' });
    await expect(pair.connector.openStream()).rejects.toMatchObject({ code: 'OXY_ERR_TUNNEL_CLOSED' });
  });

  it('a lost transport closes with TRANSPORT_LOST', async () => {
    pair = await http2Pair();
    // Cut the edge's TCP connection without a GOAWAY.
    (pair.edge as unknown as { socket: { destroy(): void } }).socket.destroy();
    expect(await pair.connector.closed).toMatchObject({ code: TunnelCloseCode.TRANSPORT_LOST, remote: false });
  });

  it('a reset TCP connection closes the connector with TRANSPORT_LOST and says why', async () => {
    pair = await http2Pair();
    // The connector's TCP socket sits under its read-ahead relay: the reset must still reach its session.
    // (A TLSSocket cannot reset; the TCP socket under the edge's TLS can: Node keeps it as `_parent`.)
    (pair.edge as unknown as { socket: { _parent: { resetAndDestroy(): void } } }).socket._parent.resetAndDestroy();
    expect(await pair.connector.closed).toMatchObject({ code: TunnelCloseCode.TRANSPORT_LOST, reason: expect.stringContaining('ECONNRESET') });
  });

  it('carries flow-tagged datagrams both ways over the datagram stream', async () => {
    pair = await http2Pair();
    expect(pair.edge.supportsDatagrams).toBe(true);
    expect(pair.edge.datagramsReliable).toBe(true);
    const atConnector: TunnelDatagram[] = [];
    const atEdge: TunnelDatagram[] = [];
    const copy = (d: TunnelDatagram): TunnelDatagram => ({ ...d, payload: Buffer.from(d.payload) });
    pair.connector.onDatagram((data) => atConnector.push(copy(decodeDatagram(data))));
    pair.edge.onDatagram((data) => atEdge.push(copy(decodeDatagram(data))));
    await new Promise((r) => setTimeout(r, 50)); // the edge opens the datagram stream at start
    for (let i = 0; i < 200; i++) {
      const flow = 1000 + (i % 5);
      expect(pair.edge.sendDatagram(encodeDatagram(DatagramType.UDP, flow, Buffer.from(`down ${i}`)))).toBe(true);
      expect(pair.connector.sendDatagram(encodeDatagram(DatagramType.IP, flow, Buffer.alloc(1 + (i % 1400), i)))).toBe(true);
    }
    await until(() => atConnector.length >= 200 && atEdge.length >= 200, 3000, '200 datagrams each way');
    expect(atConnector).toHaveLength(200);
    expect(atEdge).toHaveLength(200);
    atConnector.forEach((d, i) => expect(d).toEqual({ type: DatagramType.UDP, flowId: 1000 + (i % 5), payload: Buffer.from(`down ${i}`) }));
    atEdge.forEach((d, i) => expect(d).toEqual({ type: DatagramType.IP, flowId: 1000 + (i % 5), payload: Buffer.alloc(1 + (i % 1400), i) }));
    expect(pair.edge.sendDatagram(Buffer.alloc(pair.edge.maxDatagramSize + 1))).toBe(false);
    expect(pair.edge.stats()).toMatchObject({ datagramsSent: 200, datagramsReceived: 200, datagramsDropped: 1 });
  });

  it('a drain on the control stream reaches the other side', async () => {
    pair = await http2Pair();
    const accepted = pair.connector.acceptStream({ timeoutMs: 5000 });
    const edgeControl = new ControlChannel(await pair.edge.openStream());
    const connectorControl = new ControlChannel(await accepted);
    const drained = new Promise<string>((resolve) => edgeControl.once('drain', resolve));
    await connectorControl.drain('connector shutting down');
    expect(await drained).toBe('connector shutting down');
    expect(edgeControl.peerDraining).toBe(true);
  });
});
