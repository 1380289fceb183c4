import { describe, expect, it } from 'vitest';
import { Ingress, parseService } from '../../../src/engine/connector/ingress.js';
import { matchHost } from '../../../src/core/host-match.js';
import { parseDuration } from '../../../src/engine/connector/duration.js';

const rules = Ingress.parse(
  [
    { hostname: 'www.example.com', service: 'https://localhost:8000' },
    { hostname: '*.example.xyz', path: '^/[a-zA-Z]+\\.html$', service: 'http://localhost:8001', originRequest: { httpHostHeader: 'inner' } },
    { hostname: 'ssh.example.com', service: 'ssh://localhost:2222' },
    { path: '^/status', service: 'http_status:204' },
    { service: 'http_status:404' },
  ],
  { connectTimeout: '10s', noTLSVerify: true },
);

describe('ingress rules', () => {
  it('say what picks a rule again (the connector routes heads natively by it): nothing, the host alone, or the path too', () => {
    const one = Ingress.singleOrigin('http://localhost:8080');
    expect(one.decidedBy('any.example.com', one.rules[0])).toBe('any');
    const www = rules.match('www.example.com', '/');
    expect(rules.decidedBy('www.example.com', www)).toBe('host');
    // ssh.example.com: no earlier rule matches the host, whatever the path.
    expect(rules.decidedBy('ssh.example.com', rules.match('ssh.example.com', '/x'))).toBe('host');
    // The path rule (and every host after it: its catch-all host matches all) needs the path.
    expect(rules.decidedBy('other.com', rules.match('other.com', '/status'))).toBeUndefined();
    expect(rules.decidedBy('other.com', rules.match('other.com', '/x'))).toBeUndefined();
    // a.example.xyz may match the path rule with another path: the catch-all it got now is not decided by host.
    expect(rules.decidedBy('a.example.xyz', rules.match('a.example.xyz', '/x'))).toBeUndefined();
  });

  it('pick the first rule matching host (port ignored) and path; the last catches everything (0-based, as cloudflared)', () => {
    expect(rules.match('www.example.com', '/').index).toBe(0);
    expect(rules.match('WWW.Example.com:8443', '/x').index).toBe(0);
    expect(rules.match('a.example.xyz', '/page.html').index).toBe(1);
    expect(rules.match('a.b.example.xyz', '/page.html').index).toBe(1);
    expect(rules.match('a.example.xyz', '/dir/page.html').index).toBe(4);
    expect(rules.match('example.xyz', '/page.html').index).toBe(4);
    expect(rules.match('anything.test', '/status/x').index).toBe(3);
    expect(rules.match('anything.test', '/').index).toBe(4);
  });

  it('parse services of every kind, and merge originRequest over the defaults', () => {
    expect(rules.rules[2].service).toEqual({ kind: 'tcp', host: 'localhost', port: 2222, scheme: 'ssh' });
    expect(rules.rules[1].originRequest).toMatchObject({ connectTimeoutMs: 10_000, noTLSVerify: true, httpHostHeader: 'inner' });
    expect(rules.rules[0].originRequest.httpHostHeader).toBeUndefined();
    expect(parseService('unix:/run/app.sock')).toEqual({ kind: 'unix', path: '/run/app.sock', tls: false });
    expect(parseService('tcp://[2001:db8::1]:22')).toEqual({ kind: 'tcp', host: '2001:db8::1', port: 22, scheme: 'tcp' });
    expect(parseService('hello-world')).toEqual({ kind: 'hello_world' });
    expect(matchHost('*.example.com', 'example.com')).toBe(false);
  });

  it("refuse what cloudflared refuses, with cloudflared's texts", () => {
    const bad = (r: object[]) => () => Ingress.parse(r as never);
    expect(bad([])).toThrow("The config file doesn't contain any ingress rules");
    expect(bad([{ hostname: 'a.com', service: 'http://x' }])).toThrow(
      'The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)',
    );
    expect(bad([{ service: 'http://x' }, { service: 'http://y' }])).toThrow(
      "Rule #1 is matching the hostname '', but this will match every hostname, meaning the rules which follow it will never be triggered.",
    );
    expect(bad([{ hostname: 'a.*.com', service: 'http://x' }, { service: 'http://y' }])).toThrow(
      'Hostname patterns can have at most one wildcard character ("*") and it can only be used for subdomains, e.g. "*.example.com"',
    );
    expect(bad([{ hostname: 'a.com:80', service: 'http://x' }, { service: 'http://y' }])).toThrow('Hostname cannot contain a port');
    expect(bad([{ service: 'localhost:8000' }])).toThrow('localhost:8000 is an invalid address, please make sure it has a scheme and a hostname');
    expect(bad([{ service: 'http://localhost:8000/api' }])).toThrow("ingress rules don't support proxying to a different path");
    expect(bad([{ hostname: 'a.com', path: '(', service: 'http://x' }, { service: 'http://y' }])).toThrow('Rule #1 has an invalid regex');
    expect(bad([{ service: 'http_status:abc' }])).toThrow('invalid HTTP status');
  });

  it('read Go durations', () => {
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration(3)).toBe(3000);
    expect(() => parseDuration('5 minutes')).toThrow('use a duration like 30s');
  });
});
