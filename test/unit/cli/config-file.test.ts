import { describe, expect, it } from 'vitest';
import { applyRawConfig } from '../../../src/cli/config-file.js';
import { configFileFlags, edgeList } from '../../../src/cli/tunnel-run-flags.js';

const apply = (raw: Record<string, unknown>, flags: Record<string, unknown> = {}, explicit: string[] = []) =>
  applyRawConfig(raw, 'config.yml', { flagDefs: configFileFlags, flags, explicitFlags: new Set(explicit) });

describe('config.yml keys as tunnel run flags', () => {
  it("take the flag's parsed value unless the command line or environment set it", async () => {
    const flags: Record<string, unknown> = { protocol: 'auto', 'ha-connections': 4, 'hello-world': false, loglevel: 'warn' };
    const r = await apply(
      { protocol: 'quic', 'ha-connections': 2, 'hello-world': 'true', loglevel: 'debug', edge: ['198.18.0.1:7844', '198.18.0.2:7844'] },
      flags,
      ['loglevel'],
    );
    expect(flags).toEqual({ protocol: 'quic', 'ha-connections': 2, 'hello-world': true, loglevel: 'warn', edge: ['198.18.0.1:7844', '198.18.0.2:7844'] });
    // --edge repeated, a comma list, or both (and $TUNNEL_EDGE's one string): one list of edges.
    expect(edgeList(flags.edge as string[])).toBe('198.18.0.1:7844,198.18.0.2:7844');
    expect(edgeList(['198.18.0.1:7844', '198.18.0.2:7844, 198.18.0.3:7844'])).toBe('198.18.0.1:7844,198.18.0.2:7844,198.18.0.3:7844');
    expect(edgeList('198.18.0.1:7844,198.18.0.2:7844')).toBe('198.18.0.1:7844,198.18.0.2:7844');
    expect(edgeList(undefined)).toBeUndefined();
    expect(r.applied.sort()).toEqual(['edge', 'ha-connections', 'hello-world', 'loglevel', 'protocol']);
  });

  it('sort the other keys: no effect here, or unknown', async () => {
    const r = await apply({ 'no-autoupdate': true, region: 'us', 'surprise-key': 1, tunnel: 'web', 'warp-routing': { enabled: true } });
    expect(r.noEffect).toEqual(['no-autoupdate', 'region']);
    expect(r.unknown).toEqual(['surprise-key']);
  });

  it('refuse a value the flag would refuse, naming the file and the key', async () => {
    await expect(apply({ protocol: 'carrier-pigeon' })).rejects.toThrow('config.yml: protocol: expected one of http2, quic, auto, got carrier-pigeon');
    await expect(apply({ 'ha-connections': 99 })).rejects.toThrow(/config\.yml: ha-connections: .*16/);
    await expect(apply({ 'hello-world': 'yes please' })).rejects.toThrow('config.yml: hello-world: expected true or false');
  });
});
