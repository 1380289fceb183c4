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
    expect(bad.stderr).toBe(
      'Validation failed: The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)\n',
    );
  });

  it('says when there is no config file', async () => {
    const r = await oxy(home, ['tunnel', 'ingress', 'validate']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('No configuration file was found.');
  });

  it('prints the rule a URL matches', async () => {
    writeFileSync(join(home, 'config.yml'), CONFIG);
    expect(await oxyOk(home, ['tunnel', 'ingress', 'rule', 'https://a.example.xyz/page.html'])).toBe(
      `Using rules from ${join(home, 'config.yml')}\nMatched rule #2\n\thostname: *.example.xyz\n\tpath: /[a-zA-Z]+.html\n\tservice: https://localhost:8001\n`,
    );
    expect(await oxyOk(home, ['tunnel', 'ingress', 'rule', 'https://other.test/'])).toContain('Matched rule #3\n\tservice: http_status:404\n');
  });
});
