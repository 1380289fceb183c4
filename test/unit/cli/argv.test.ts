import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rewriteArgv } from '../../../src/cli/argv.js';
import { ROOT } from '../../helpers/cli.js';

// The real manifest (npm run build writes it): flag types come from our commands.
const commands = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8')).commands;
const rw = (line: string) => rewriteArgv(line.split(' '), commands);

describe("cloudflared's command lines", () => {
  it.each([
    ['tunnel --protocol quic run NAME', 'tunnel run NAME --protocol quic'],
    ['tunnel -p quic run NAME', 'tunnel run NAME -p quic'],
    ['tunnel --config f.yml ingress validate', 'tunnel ingress validate --config f.yml'],
    ['tunnel --config f.yml ingress rule https://a.example.com', 'tunnel ingress rule https://a.example.com --config f.yml'],
    ['--loglevel debug tunnel run NAME', 'tunnel run --loglevel debug NAME'],
    ['tunnel --url http://localhost:8000', 'tunnel --url http://localhost:8000'],
    ['tunnel --hello-world run run', 'tunnel run run --hello-world'],
    ['tunnel --edge run run NAME', 'tunnel run NAME --edge run'],
    ['tunnel route ip add 10.0.0.0/8 NAME', 'tunnel route ip add 10.0.0.0/8 NAME'],
    ['vnet update --default=false v1', 'vnet update v1 --no-default'],
    ['vnet update --default=true v1', 'vnet update v1 --default'],
    ['tunnel run --hello-world=false NAME', 'tunnel run NAME'],
    ['-v', '--version'],
  ])('%s → %s', (input, want) => expect(rw(input).argv.join(' ')).toBe(want));

  it('takes out flags that mean nothing here, with their values, and says so once', () => {
    const r = rw('tunnel --no-autoupdate --region us --autoupdate-freq=24h run --no-autoupdate --token T');
    expect(r.argv.join(' ')).toBe('tunnel run --token T');
    expect(r.notices).toEqual([
      '--no-autoupdate has no effect in oxyctl (accepted for cloudflared compatibility)',
      '--region has no effect in oxyctl (accepted for cloudflared compatibility)',
      '--autoupdate-freq has no effect in oxyctl (accepted for cloudflared compatibility)',
    ]);
  });

  it('leaves everything after -- alone', () => {
    expect(rw('tunnel run NAME -- --no-autoupdate').argv.join(' ')).toBe('tunnel run NAME -- --no-autoupdate');
  });
});
