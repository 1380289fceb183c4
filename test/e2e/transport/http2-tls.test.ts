import { X509Certificate } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { certificatePin, createEdgeIdentity } from '../../../src/engine/transport/identity.js';
import { dialHttp2Tunnel, Http2TunnelListener } from '../../../src/engine/transport/http2/index.js';
import { testIdentity } from './helpers.js';

let listener: Http2TunnelListener | undefined;
afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

describe('edge TLS identity and connector verification', () => {
  it('issues a CA-signed server certificate for the names and IPs, and a CA pin', async () => {
    const id = await testIdentity();
    const ca = new X509Certificate(id.caCert);
    const cert = new X509Certificate(id.cert);
    expect(ca.ca).toBe(true);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.subjectAltName).toContain('DNS:edge.oxy.test');
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(id.caPin).toBe(certificatePin(id.caCert));
    expect(Buffer.from(id.caPin, 'base64')).toHaveLength(32);
    expect(id.key).toContain('BEGIN PRIVATE KEY');
    expect(id.caKey).toContain('BEGIN PRIVATE KEY');
  });

  it('connects by IP and by name with the CA and pin; refuses a wrong pin or an untrusted CA', async () => {
    const id = await testIdentity();
    listener = new Http2TunnelListener({ key: id.key, cert: id.certChain });
    listener.on('connectionError', () => undefined);
    const { port } = await listener.listen(0, '127.0.0.1');

    const byIp = await dialHttp2Tunnel({ host: '127.0.0.1', port, ca: id.caCert, caPin: id.caPin });
    byIp.close();
    const byName = await dialHttp2Tunnel({ host: '127.0.0.1', servername: 'edge.oxy.test', port, ca: id.caCert });
    byName.close();

    const other = await createEdgeIdentity({ ips: ['127.0.0.1'] });
    await expect(dialHttp2Tunnel({ host: '127.0.0.1', port, ca: id.caCert, caPin: other.caPin })).rejects.toMatchObject({
      code: 'OXY_ERR_TUNNEL_PIN_MISMATCH',
    });
    await expect(dialHttp2Tunnel({ host: '127.0.0.1', port, ca: other.caCert })).rejects.toMatchObject({
      code: 'OXY_ERR_TUNNEL_HANDSHAKE',
    });
    await expect(dialHttp2Tunnel({ host: '127.0.0.1', servername: 'wrong.oxy.test', port, ca: id.caCert })).rejects.toMatchObject({
      code: 'OXY_ERR_TUNNEL_HANDSHAKE',
    });
  });
});
