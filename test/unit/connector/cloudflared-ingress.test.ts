/**
 * cloudflared's own ingress tests as the specification: the tables of ingress/ingress_test.go
 * (TestParseIngress, TestFindMatchingRule, TestIsHTTPService, TestParseUnixSocket*),
 * ingress/rule_test.go (Test_rule_matches), ingress/config_test.go
 * (TestOriginRequestConfigOverrides/Defaults) and config/configuration_test.go
 * (TestConfigFileSettings), ported case by case. Cases that need a Cloudflare account or
 * cloudflared's Go internals (JSON marshalling of rules, remote config) are left out.
 */
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../../src/engine/connector/config.js';
import { Ingress, ruleMatches, type IngressRule } from '../../../src/engine/connector/ingress.js';

const parseIngressYaml = (yaml: string): Ingress => {
  const raw = (parseYaml(yaml) ?? {}) as { ingress?: never; originRequest?: never };
  return Ingress.parse(raw.ingress, raw.originRequest);
};
const services = (ing: Ingress) => ing.rules.map((r) => [r.hostname, r.service]);

describe('cloudflared ingress_test.go TestParseIngress', () => {
  const ok: [string, string, unknown[]][] = [
    [
      'Multiple rules',
      `ingress:\n - hostname: tunnel1.example.com\n   service: https://localhost:8000\n - hostname: "*"\n   service: https://localhost:8001\n`,
      [
        ['tunnel1.example.com', { kind: 'http', url: new URL('https://localhost:8000') }],
        ['*', { kind: 'http', url: new URL('https://localhost:8001') }],
      ],
    ],
    [
      'Extra keys',
      `ingress:\n - hostname: "*"\n   service: https://localhost:8000\nextraKey: extraValue\n`,
      [['*', { kind: 'http', url: new URL('https://localhost:8000') }]],
    ],
    ['ws service', `ingress:\n - hostname: "*"\n   service: wss://localhost:8000\n`, [['*', { kind: 'http', url: new URL('wss://localhost:8000') }]]],
    ['Hostname can be omitted', `ingress:\n - service: https://localhost:8000\n`, [[undefined, { kind: 'http', url: new URL('https://localhost:8000') }]]],
    ['Valid HTTP status', `ingress:\n - service: http_status:404\n`, [[undefined, { kind: 'http_status', status: 404 }]]],
    ['Valid hello world service', `ingress:\n - service: hello_world\n`, [[undefined, { kind: 'hello_world' }]]],
    [
      'TCP services',
      `ingress:\n- hostname: tcp.foo.com\n  service: tcp://127.0.0.1\n- hostname: tcp2.foo.com\n  service: tcp://localhost:8000\n- service: http_status:404\n`,
      [
        ['tcp.foo.com', { kind: 'tcp', host: '127.0.0.1', port: 7864, scheme: 'tcp' }],
        ['tcp2.foo.com', { kind: 'tcp', host: 'localhost', port: 8000, scheme: 'tcp' }],
        [undefined, { kind: 'http_status', status: 404 }],
      ],
    ],
    ['SSH services', `ingress:\n- service: ssh://127.0.0.1\n`, [[undefined, { kind: 'tcp', host: '127.0.0.1', port: 22, scheme: 'ssh' }]]],
    ['RDP services', `ingress:\n- service: rdp://127.0.0.1\n`, [[undefined, { kind: 'tcp', host: '127.0.0.1', port: 3389, scheme: 'rdp' }]]],
    ['SMB services', `ingress:\n- service: smb://127.0.0.1\n`, [[undefined, { kind: 'tcp', host: '127.0.0.1', port: 445, scheme: 'smb' }]]],
    ['Other TCP services', `ingress:\n- service: ftp://127.0.0.1\n`, [[undefined, { kind: 'tcp', host: '127.0.0.1', scheme: 'ftp' }]]],
    [
      "URL isn't necessary if using bastion",
      `ingress:\n- hostname: bastion.foo.com\n  originRequest:\n    bastionMode: true\n- service: http_status:404\n`,
      [
        ['bastion.foo.com', { kind: 'bastion' }],
        [undefined, { kind: 'http_status', status: 404 }],
      ],
    ],
    [
      'Bastion service',
      `ingress:\n- hostname: bastion.foo.com\n  service: bastion\n- service: http_status:404\n`,
      [
        ['bastion.foo.com', { kind: 'bastion' }],
        [undefined, { kind: 'http_status', status: 404 }],
      ],
    ],
  ];
  it.each(ok)('%s', (_name, yaml, want) => expect(services(parseIngressYaml(yaml))).toEqual(want));

  it('Unicode domain: keeps the name and its punycode form', () => {
    const ing = parseIngressYaml(`ingress:\n - hostname: môô.cloudflare.com\n   service: https://localhost:8000\n - service: https://localhost:8001\n`);
    expect(ing.rules[0]).toMatchObject({ hostname: 'môô.cloudflare.com', punycodeHostname: 'xn--m-xgaa.cloudflare.com' });
    expect(ing.rules[1].punycodeHostname).toBeUndefined();
  });

  it('SOCKS services: socks-proxy with its ipRules as the access policy', () => {
    const ing = parseIngressYaml(
      `ingress:\n- hostname: socks.foo.com\n  service: socks-proxy\n  originRequest:\n    ipRules:\n      - prefix: 1.1.1.0/24\n        ports: [80, 443]\n        allow: true\n      - prefix: 0.0.0.0/0\n        allow: false\n- service: http_status:404\n`,
    );
    expect(ing.rules[0].service).toEqual({ kind: 'socks' });
    const policy = ing.rules[0].originRequest.ipRules!;
    expect(policy.allowed('1.1.1.7', 443).allow).toBe(true);
    expect(policy.allowed('1.1.1.7', 22).allow).toBe(false);
    expect(policy.allowed('8.8.8.8', 443).allow).toBe(false);
    expect(policy.allowed('2001:db8::1', 443).allow).toBe(false); // no rule matches: cloudflared's default deny
    expect(ing.rules[1].originRequest.ipRules).toBeUndefined();
  });

  const bad: [string, string][] = [
    ['Empty file', ''],
    ['Invalid unicode domain', `ingress:\n - hostname: ${String.fromCharCode(0xfffd)}.cloudflare.com\n   service: https://localhost:8000\n`],
    ['Invalid service', `ingress:\n - hostname: "*"\n   service: https://local host:8000\n`],
    ["Last rule isn't catchall", `ingress:\n - hostname: example.com\n   service: https://localhost:8000\n`],
    ['First rule is catchall', `ingress:\n - service: https://localhost:8000\n - hostname: example.com\n   service: https://localhost:8000\n`],
    ["Catch-all rule can't have a path", `ingress:\n - service: https://localhost:8001\n   path: /subpath1/(.*)/subpath2\n`],
    ['Invalid regex', `ingress:\n - hostname: example.com\n   service: https://localhost:8000\n   path: "*/subpath2"\n - service: https://localhost:8001\n`],
    ['Service must have a scheme', `ingress:\n - service: localhost:8000\n`],
    ['Wildcard not at start', `ingress:\n - hostname: "test.*.example.com"\n   service: https://localhost:8000\n`],
    ["Service can't have a path", `ingress:\n - service: https://localhost:8000/static/\n`],
    ['Service with a trailing slash has a path too (Go url.Path "/")', `ingress:\n - service: https://localhost:8000/\n`],
    ['Invalid HTTP status', `ingress:\n - service: http_status:asdf\n`],
    ['Invalid HTTP status code', `ingress:\n - service: http_status:8080\n`],
    [
      'Hostname contains port',
      `ingress:\n - hostname: "test.example.com:443"\n   service: https://localhost:8000\n - hostname: "*"\n   service: https://localhost:8001\n`,
    ],
  ];
  it.each(bad)('%s is refused', (_name, yaml) => expect(() => parseIngressYaml(yaml)).toThrow());

  it('TestParseUnixSocket / TestParseUnixSocketTLS', () => {
    expect(parseIngressYaml('ingress:\n- service: unix:/tmp/echo.sock\n').rules[0].service).toEqual({ kind: 'unix', path: '/tmp/echo.sock', tls: false });
    expect(parseIngressYaml('ingress:\n- service: unix+tls:/tmp/echo.sock\n').rules[0].service).toEqual({ kind: 'unix', path: '/tmp/echo.sock', tls: true });
  });

  it('TestIsHTTPService', () => {
    for (const [url, http] of [
      ['http://localhost', true],
      ['https://127.0.0.1:8000', true],
      ['ws://localhost', true],
      ['wss://localhost:8000', true],
      ['tcp://localhost:9000', false],
    ] as const) {
      expect(parseIngressYaml(`ingress:\n- service: ${url}\n`).rules[0].service.kind === 'http').toBe(http);
    }
  });
});

describe('cloudflared ingress_test.go TestFindMatchingRule', () => {
  const ing = parseIngressYaml(
    `ingress:\n- hostname: tunnel-a.example.com\n  service: http_status:200\n- hostname: tunnel-b.example.com\n  path: /health\n  service: http_status:200\n- hostname: "*"\n  service: http_status:404\n`,
  );
  it.each([
    ['tunnel-a.example.com', '/', 0],
    ['tunnel-a.example.com', '/pages/about', 0],
    ['tunnel-a.example.com:443', '/pages/about', 0],
    ['tunnel-b.example.com', '/health', 1],
    ['tunnel-b.example.com', '/index.html', 2],
    ['tunnel-c.example.com', '/', 2],
  ])('%s%s → rule #%i', (host, path, want) => expect(ing.match(host, path).index).toBe(want));
});

describe('cloudflared rule_test.go Test_rule_matches', () => {
  const rule = (hostname: string, path?: string): Pick<IngressRule, 'hostname' | 'punycodeHostname' | 'path'> => {
    const r = parseIngressYaml(
      `ingress:\n- hostname: "${hostname}"\n${path !== undefined ? `  path: "${path}"\n` : ''}  service: http_status:200\n- service: http_status:404\n`,
    ).rules[0];
    return r;
  };
  const matches = (r: Pick<IngressRule, 'hostname' | 'punycodeHostname' | 'path'>, url: string) => {
    const u = new URL(url);
    return ruleMatches(r, u.hostname, u.pathname);
  };
  it.each([
    ['Just hostname, pass', 'example.com', undefined, 'https://example.com', true],
    ['Unicode hostname with punycode request, pass', 'môô.cloudflare.com', undefined, 'https://xn--m-xgaa.cloudflare.com', true],
    ['Just hostname, fail', 'example.com', undefined, 'https://foo.bar', false],
    ['Just wildcard hostname, pass', '*.example.com', undefined, 'https://adam.example.com', true],
    ['Just wildcard hostname, fail', '*.example.com', undefined, 'https://tunnel.com', false],
    ['Wildcard over multiple subdomains', '*.example.com', undefined, 'https://adam.chalmers.example.com', true],
    ['Hostname and path', '*.example.com', '/static/.*\\\\.html', 'https://www.example.com/static/index.html', true],
    ['Hostname with wildcard should not match if no dot present', '*.api.abc.cloud', undefined, 'https://testing-api.abc.cloud', false],
  ] as const)('%s', (_n, host, path, url, want) => expect(matches(rule(host, path), url)).toBe(want));

  it('Unicode hostname with unicode request, pass (a Host header written in Unicode)', () => {
    expect(ruleMatches(rule('môô.cloudflare.com'), 'môô.cloudflare.com', '/')).toBe(true);
  });
  it('Entire hostname is wildcard; wildcard outside of subdomain fails; empty and nil path pass', () => {
    expect(ruleMatches({ hostname: '*' }, 'example.com', '/')).toBe(true);
    expect(ruleMatches({ hostname: '*example.com' }, 'www.example.com', '/')).toBe(false);
    expect(ruleMatches({ hostname: 'example.com', path: new RegExp('') }, 'example.com', '/')).toBe(true);
    expect(ruleMatches({ hostname: 'example.com', path: undefined }, 'example.com', '/')).toBe(true);
  });
});

describe('cloudflared config_test.go TestOriginRequestConfigOverrides / Defaults', () => {
  const ROOT = `originRequest:
  connectTimeout: 1m
  tlsTimeout: 1s
  noHappyEyeballs: true
  tcpKeepAlive: 1s
  keepAliveConnections: 1
  keepAliveTimeout: 1s
  httpHostHeader: abc
  originServerName: a1
  caPool: /tmp/path0
  noTLSVerify: true
  disableChunkedEncoding: true
  bastionMode: True
  proxyAddress: 127.1.2.3
  proxyPort: 100
  proxyType: socks5
  ipRules:
  - prefix: "10.0.0.0/8"
    ports: [80, 8080]
    allow: false
  - prefix: "fc00::/7"
    ports: [443, 4443]
    allow: true
`;
  const RULES = `ingress:
- hostname: tun.example.com
  service: https://localhost:8000
- hostname: "*"
  service: https://localhost:8001
  originRequest:
    connectTimeout: 2m
    tlsTimeout: 2s
    noHappyEyeballs: false
    tcpKeepAlive: 2s
    keepAliveConnections: 2
    keepAliveTimeout: 2s
    httpHostHeader: def
    originServerName: b2
    caPool: /tmp/path1
    noTLSVerify: false
    disableChunkedEncoding: false
    bastionMode: false
    proxyAddress: interface
    proxyPort: 200
    proxyType: ""
    ipRules:
    - prefix: "10.0.0.0/16"
      ports: [3000, 3030]
      allow: false
    - prefix: "192.16.0.0/24"
      ports: [5000, 5050]
      allow: true
`;
  const RULE1 = {
    connectTimeoutMs: 120_000,
    tlsTimeoutMs: 2000,
    tcpKeepAliveMs: 2000,
    noHappyEyeballs: false,
    keepAliveTimeoutMs: 2000,
    keepAliveConnections: 2,
    httpHostHeader: 'def',
    originServerName: 'b2',
    caPool: '/tmp/path1',
    noTLSVerify: false,
    disableChunkedEncoding: false,
    bastionMode: false,
    proxyType: undefined,
  };
  it('rule 0 inherits the root originRequest, rule 1 overrides all of it', () => {
    const ing = parseIngressYaml(ROOT + RULES);
    // cloudflared turns the root bastionMode into a bastion service for the rule that inherits it.
    expect(ing.rules[0].service).toEqual({ kind: 'bastion' });
    expect(ing.rules[0].originRequest).toMatchObject({
      connectTimeoutMs: 60_000,
      tlsTimeoutMs: 1000,
      tcpKeepAliveMs: 1000,
      noHappyEyeballs: true,
      keepAliveTimeoutMs: 1000,
      keepAliveConnections: 1,
      httpHostHeader: 'abc',
      originServerName: 'a1',
      caPool: '/tmp/path0',
      noTLSVerify: true,
      disableChunkedEncoding: true,
      bastionMode: true,
      proxyType: 'socks5',
    });
    expect(ing.rules[0].originRequest.ipRules!.rules.map((r) => [r.prefix.network, r.ports, r.allow])).toEqual([
      ['10.0.0.0/8', [80, 8080], false],
      ['fc00::/7', [443, 4443], true],
    ]);
    expect(ing.rules[1].originRequest).toMatchObject(RULE1);
    expect(ing.rules[1].originRequest.ipRules!.rules.map((r) => [r.prefix.network, r.ports, r.allow])).toEqual([
      ['10.0.0.0/16', [3000, 3030], false],
      ['192.16.0.0/24', [5000, 5050], true],
    ]);
  });
  it("without a root block, rule 0 has cloudflared's defaults", () => {
    const ing = parseIngressYaml(RULES);
    expect(ing.rules[0].originRequest).toEqual({
      connectTimeoutMs: 30_000,
      tlsTimeoutMs: 10_000,
      tcpKeepAliveMs: 30_000,
      keepAliveConnections: 100,
      keepAliveTimeoutMs: 90_000,
      noTLSVerify: false,
      matchSNItoHost: false,
      disableChunkedEncoding: false,
      http2Origin: false,
      noHappyEyeballs: false,
      bastionMode: false,
    });
    expect(ing.rules[1].originRequest).toMatchObject(RULE1);
  });
  it('JSON numbers are seconds, as in the remote-config half of the same test', () => {
    const ing = Ingress.parse([{ service: 'https://localhost:8000', originRequest: { connectTimeout: 120, tlsTimeout: 2, keepAliveTimeout: 2 } }] as never);
    expect(ing.rules[0].originRequest).toMatchObject({ connectTimeoutMs: 120_000, tlsTimeoutMs: 2000, keepAliveTimeoutMs: 2000 });
  });
  it('says which originRequest keys have no effect here and which are unknown', () => {
    const cfg = parseConfig(parseYaml(ROOT + RULES + 'warp-routing:\n  bogus: 1\n') as never, 'test');
    expect(cfg.notes.noEffect).toEqual(expect.arrayContaining(['originRequest.proxyAddress', 'originRequest.proxyPort']));
    expect(cfg.notes.unknown).toEqual(['warp-routing.bogus']);
  });
});

describe('cloudflared configuration_test.go TestConfigFileSettings', () => {
  it('reads tunnel, ingress, warp-routing and ipRules; other keys stay for the flags', () => {
    const raw = parseYaml(`tunnel: config-file-test
originRequest:
  ipRules:
  - prefix: "10.0.0.0/8"
    ports: [80, 8080]
    allow: false
  - prefix: "fc00::/7"
    ports: [443, 4443]
    allow: true
ingress:
 - hostname: tunnel1.example.com
   path: /id
   service: https://localhost:8000
 - hostname: "*"
   service: https://localhost:8001
warp-routing:
  enabled: true
  connectTimeout: 2s
  tcpKeepAlive: 10s

retries: 5
grace-period: 30s
`);
    const cfg = parseConfig(raw, 'test');
    expect(cfg.tunnel).toBe('config-file-test');
    expect(cfg.ingress!.rules.map((r) => [r.hostname, r.pathText, r.serviceText])).toEqual([
      ['tunnel1.example.com', '/id', 'https://localhost:8000'],
      ['*', undefined, 'https://localhost:8001'],
    ]);
    expect(cfg.warpRouting).toMatchObject({ enabled: true, connectTimeoutMs: 2000, tcpKeepAliveMs: 10_000 });
    expect(cfg.ingress!.rules[0].originRequest.ipRules!.rules).toHaveLength(2);
    expect(cfg.raw.retries).toBe(5);
    expect(cfg.raw['grace-period']).toBe('30s');
  });
});
