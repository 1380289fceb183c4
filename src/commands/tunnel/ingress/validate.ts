import { Flags } from '@oclif/core';
import { BaseCommand } from '../../../cli/base-command.js';
import { loadIngressConfig } from '../../../cli/ingress-config.js';

export default class IngressValidate extends BaseCommand<typeof IngressValidate> {
  static summary = 'Validate the ingress configuration';
  static description =
    'Validates the ingress rules of a config file (--config, else the first config.yml where `tunnel run` looks) or of --json: ' +
    'services must parse, wildcards may only lead a hostname, and the last rule must match everything. Keys oxyctl does not ' +
    'use are listed as a warning, as cloudflared lists unused keys.';
  static examples = [
    '<%= config.bin %> tunnel ingress validate --config ./config.yml',
    `<%= config.bin %> tunnel ingress validate --json '{"ingress":[{"service":"http_status:404"}]}'`,
  ];
  static flags = {
    config: Flags.string({ description: 'Path to the config file (YAML)', env: 'TUNNEL_CONFIG' }),
    json: Flags.string({
      char: 'j',
      description: 'Accepts data in the form of json as an input rather than read from a file',
      env: 'TUNNEL_INGRESS_VALIDATE_JSON',
    }),
    url: Flags.string({ hidden: true, description: 'Refused with ingress rules, as by tunnel run', env: 'TUNNEL_URL' }),
  };

  async run(): Promise<{ ok: true; rules: number; unusedKeys: string[]; noEffectKeys: string[] }> {
    const loaded = await loadIngressConfig(this.home, this.flags);
    if (loaded.unknown.length > 0) {
      process.stdout.write(`Warning: unused keys detected in your config file. Here is a list of unused keys:\n${loaded.unknown.join('\n')}\n`);
    } else {
      process.stdout.write('OK\n');
    }
    if (loaded.noEffect.length > 0) process.stderr.write(`Note: ${loaded.noEffect.join(', ')}: no effect in oxyctl (accepted for cloudflared compatibility)\n`);
    return { ok: true, rules: loaded.config.ingress!.rules.length, unusedKeys: loaded.unknown, noEffectKeys: loaded.noEffect };
  }
}
