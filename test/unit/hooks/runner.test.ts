import { describe, expect, it } from 'vitest';
import { HookError, HookRunner, HookTrace, validateHooks, expectedOrder, orderViolations } from '../../../src/engine/hooks/index.js';
import { parseSni } from '../../../src/engine/protocol/sni.js';
import { createLogger } from '../../../src/engine/observe/log.js';

const log = createLogger({ level: 'silent' });
const client = { address: '198.18.0.1', port: 1 };

describe('HookRunner', () => {
  it('leaves hooks that are not implemented undefined (call sites test a field, nothing else)', () => {
    const r = HookRunner.none(log);
    for (const k of [
      'newCtx',
      'ingressConnection',
      'egressConnection',
      'connectRequest',
      'connectResponse',
      'handleFlow',
      'handlePacket',
      'established',
    ] as const) {
      expect(r[k]).toBeUndefined();
    }
    expect(r.connection('connect-proxy', client, client).ext).toEqual({});
  });

  it('creates the context once per connection and passes the same object to every hook', () => {
    const seen: unknown[] = [];
    const r = new HookRunner(
      {
        newCtx: () => ({ n: 0 }),
        egress: { handleConnection: (_t: unknown, ctx: { ext: unknown }) => void seen.push(ctx.ext) },
        http: { handleProxyConnectRequest: (_h: unknown, ctx: { ext: unknown }) => void seen.push(ctx.ext) },
      },
      { log },
    );
    const conn = r.connection('connect-proxy', client, client);
    r.call(conn, 'http.handleProxyConnectRequest', r.connectRequest!, { authority: '', host: '', port: 1, headers: [] }, conn);
    r.call(conn, 'egress.handleConnection', r.egressConnection!, { host: '', port: 1, ip: '', ips: [] }, conn);
    expect(seen[0]).toBe(conn.ext);
    expect(seen[1]).toBe(conn.ext);
  });

  it('keeps a synchronous hook synchronous, and names the hook in errors (sync and async)', async () => {
    const r = new HookRunner({}, { log });
    const conn = r.connection('connect-proxy', client, client);
    expect(r.call(conn, 'x.sync', () => 42)).toBe(42);
    expect(() =>
      r.call(conn, 'x.throws', () => {
        throw new Error('boom');
      }),
    ).toThrow(HookError);
    await expect(
      r.call(conn, 'x.rejects', async () => {
        throw new Error('later');
      }),
    ).rejects.toMatchObject({ code: 'OXY_ERR_HOOK', hook: 'x.rejects', message: 'Hook x.rejects failed: later' });
  });

  it('records the trace per connection (per-packet hooks once) and hands it over at close, once', async () => {
    const trace = new HookTrace();
    let closes = 0;
    const r = new HookRunner({ ingress: { handleConnectionClose: () => void closes++ } }, { log, trace });
    const conn = r.connection('ip-flow', client, client);
    for (let i = 0; i < 3; i++) r.callPerPacket(conn, 'ipFlow.handlePacket', () => undefined);
    r.close(conn, { bytesIn: 0, bytesOut: 0, durationMs: 0, reason: 'fin' });
    r.close(conn, { bytesIn: 0, bytesOut: 0, durationMs: 0, reason: 'fin' });
    expect(closes).toBe(1);
    expect((await trace.waitFor()).hooks).toEqual(['ipFlow.handlePacket', 'ingress.handleConnectionClose']);
  });

  it('without tracing, connections carry no trace array', () => {
    expect(HookRunner.none(log).connection('connect-proxy', client, client).trace).toBeUndefined();
  });
});

describe('validateHooks', () => {
  it('accepts class instances and refuses typos and unknown families', () => {
    class Egress {
      handleConnection() {
        return undefined;
      }
    }
    expect(() => validateHooks('m', { egress: new Egress() })).not.toThrow();
    expect(() => validateHooks('m', { egres: {} })).toThrow(/unknown hook family "egres"/);
    expect(() => validateHooks('m', { http: { handleConnectRequest() {} } })).toThrow(/unknown hook http\.handleConnectRequest/);
  });
});

describe('order checks', () => {
  it('expectedOrder filters the documented order', () => {
    expect(expectedOrder('connect-proxy', ['ingress.handleConnectionClose', 'newCtx'])).toEqual(['newCtx', 'ingress.handleConnectionClose']);
    expect(orderViolations('http-proxy', ['newCtx', 'http.handleRequest', 'http.handleResponse', 'http.handleRequest', 'http.handleResponse'])).toEqual([]);
    expect(orderViolations('ip-flow', ['nope'])).toEqual(['#0 nope is not a ip-flow hook']);
  });

  it('on kept-alive connections any request hook may start the next request; the rest may not go back', () => {
    // An app with only handleResponse: one per request.
    expect(orderViolations('public-hostname', ['newCtx', 'http.handleResponse', 'http.handleResponse', 'ingress.handleConnectionClose'])).toEqual([]);
    expect(orderViolations('http-proxy', ['egress.handleConnection', 'http.handleResponse', 'egress.handleConnection', 'http.handleResponse'])).toEqual([]);
    expect(orderViolations('public-hostname', ['ingress.handleConnection', 'http.handleRequest', 'ingress.handleConnection'])).toHaveLength(1);
    expect(orderViolations('public-hostname', ['http.handleResponse', 'ingress.handleConnectionClose', 'http.handleRequest'])).toHaveLength(1);
    expect(orderViolations('connect-proxy', ['http.handleProxyConnectResponse', 'http.handleProxyConnectRequest'])).toHaveLength(1);
  });
});

describe('parseSni', () => {
  it('reads the server name of a ClientHello and gives up on anything else', () => {
    const name = Buffer.from('example.test');
    const sniExt = Buffer.concat([Buffer.from([0, 0]), u16(name.length + 5), u16(name.length + 3), Buffer.from([0]), u16(name.length), name]);
    const exts = Buffer.concat([u16(sniExt.length), sniExt]);
    const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32), Buffer.from([0]), u16(2), Buffer.from([0x13, 0x01]), Buffer.from([1, 0]), exts]);
    const hs = Buffer.concat([Buffer.from([1, 0]), u16(body.length), body]);
    const record = Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length), hs]);
    expect(parseSni(record)).toBe('example.test');
    expect(parseSni(record.subarray(0, 50))).toBeUndefined();
    expect(parseSni(Buffer.from('GET / HTTP/1.1\r\n'))).toBeUndefined();
  });
});

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
