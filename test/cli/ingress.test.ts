import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { oxy, oxyOk, tempHome } from '../helpers/cli.js';

let home: string;
let cleanup: () => void;
beforeEach(() => ({ home, cleanup } = tempHome()));
afterEach(() => cleanup());

const CONFIG = `tunnel: example
ingress:
  - hostname: www.example.com
    service: https://localhost:8000
  - hostname: "*.example.xyz"
    path: /[a-zA-Z]+.html
    service: https://localhost:8001
  - service: http_status:404
`;

describe('oxyctl tunnel ingress', () => {
  it('validates the config in the data directory, or --config, or --json', async () => {
    writeFileSync(join(home, 'config.yml'), CONFIG);
    expect(await oxyOk(home, ['tunnel', 'ingress', 'validate'])).toBe(`Validating rules from ${join(home, 'config.yml')}\nOK\n`);
    const other = join(home, 'other.yml');
    writeFileSync(other, `${CONFIG}surprise: 1\n`);
    expect(await oxyOk(home, ['tunnel', 'ingress', 'validate', '--config', other])).toContain(
      'Warning: unused keys detected in your config file. Here is a list of unused keys:\nsurprise\n',
    );
    const bad = await oxy(home, ['tunnel', 'ingress', 'validate', '--json', '{"ingress":[{"hostname":"a.com","service":"http://x"}]}']);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toBe('Validating rules from cmdline flag --json\n');
    expect(bad.stderr).toBe('Validation failed: The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)\n');
  });

  it('says when there is no config file', async () => {
    const r = await oxy(home, ['tunnel', 'ingress', 'validate'], { HOME: home });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('No configuration file was found.');
  });

  it('prints the rule a URL matches', async () => {
    writeFileSync(join(home, 'config.yml'), CONFIG);
    expect(await oxyOk(home, ['tunnel', 'ingress', 'rule', 'https://a.example.xyz/page.html'])).toBe(
      `Using rules from ${join(home, 'config.yml')}\nMatched rule #1\n\thostname: *.example.xyz\n\tpath: /[a-zA-Z]+.html\n\tservice: https://localhost:8001\n`,
    );
    expect(await oxyOk(home, ['tunnel', 'ingress', 'rule', 'https://other.test/'])).toContain('Matched rule #2\n\tservice: http_status:404\n');
  });

  // cloudflared's component-tests/test_config.py, test_validate_ingress_rules: the same rules,
  // the same URLs, the same (0-based) rule numbers.
  it('matches the rules of cloudflared component test_config.py with its numbering', async () => {
    writeFileSync(
      join(home, 'config.yml'),
      `ingress:
  - hostname: example.com
    service: https://localhost:8000
    originRequest:
      originServerName: test.example.com
      caPool: /etc/certs/ca.pem
  - hostname: api.example.com
    path: login
    service: https://localhost:9000
  - hostname: wss.example.com
    service: wss://localhost:8000
  - hostname: ssh.example.com
    service: ssh://localhost:8000
  - service: http_status:404
`,
    );
    expect(await oxyOk(home, ['tunnel', 'ingress', 'validate'])).toContain('OK\n');
    const cases: [string, number][] = [
      ['http://example.com/index.html', 0],
      ['https://example.com/index.html', 0],
      ['https://api.example.com/login', 1],
      ['https://wss.example.com', 2],
      ['https://ssh.example.com', 3],
      ['https://api.example.com', 4],
    ];
    for (const [url, n] of cases) expect(await oxyOk(home, ['tunnel', 'ingress', 'rule', url])).toContain(`Matched rule #${n}\n`);
  });

  it('takes --config before the subcommand, refuses TUNNEL_URL with rules, and names keys it does not use', async () => {
    const file = join(home, 'elsewhere.yml');
    writeFileSync(file, `${CONFIG}protocol: quic\nno-autoupdate: true\nsurprise: 1\n`);
    const r = await oxy(home, ['tunnel', '--config', file, 'ingress', 'validate']);
    expect(r.code).toBe(0);
    // protocol is a flag (fine), no-autoupdate has no effect here (a note), surprise is unknown (cloudflared's warning).
    expect(r.stdout).toBe(`Validating rules from ${file}\nWarning: unused keys detected in your config file. Here is a list of unused keys:\nsurprise\n`);
    expect(r.stderr).toContain('no-autoupdate: no effect in oxyctl');
    const withUrl = await oxy(home, ['tunnel', 'ingress', 'validate', '--config', file], { TUNNEL_URL: 'http://localhost:1' });
    expect(withUrl.code).not.toBe(0);
    expect(withUrl.stderr).toContain("You can't set the --url flag (or $TUNNEL_URL) when using multiple-origin ingress rules");
  });

  it("finds cloudflared's config in ~/.cloudflared when oxyctl has none, with one notice", async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(home, 'user', '.cloudflared'), { recursive: true });
    const data = join(home, 'data');
    mkdirSync(data);
    writeFileSync(join(home, 'user', '.cloudflared', 'config.yml'), CONFIG);
    const r = await oxy(data, ['tunnel', 'ingress', 'rule', 'https://www.example.com/'], { HOME: join(home, 'user') });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Using rules from ${join(home, 'user', '.cloudflared', 'config.yml')}\nMatched rule #0\n`);
    expect(r.stderr).toBe(`Using cloudflared's config file ${join(home, 'user', '.cloudflared', 'config.yml')} (no config.yml in oxyctl's directories)\n`);
    // oxyctl's own directory comes first.
    mkdirSync(join(home, 'user', '.oxyctl'));
    writeFileSync(join(home, 'user', '.oxyctl', 'config.yml'), 'ingress:\n  - service: http_status:503\n');
    const ours = await oxy(data, ['tunnel', 'ingress', 'rule', 'https://www.example.com/'], { HOME: join(home, 'user') });
    expect(ours.stdout).toContain('Matched rule #0\n\tservice: http_status:503\n');
    expect(ours.stderr).toBe('');
  });
});
