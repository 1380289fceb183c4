import { Flags } from '@oclif/core';
import { BaseCommand } from '../../../cli/base-command.js';
import { loadIngressConfig } from '../../../cli/ingress-config.js';

export default class IngressValidate extends BaseCommand<typeof IngressValidate> {
  static summary = 'Validate the ingress configuration';
  static description =
    "Validates the ingress rules of a config file (--config, else config.yml in the data directory) or of --json: " +
    'services must parse, wildcards may only lead a hostname, and the last rule must match everything.';
  static examples = ['<%= config.bin %> tunnel ingress validate --config ./config.yml', `<%= config.bin %> tunnel ingress validate --json '{"ingress":[{"service":"http_status:404"}]}'`];
  static flags = {
    config: Flags.string({ description: 'Path to the config file (YAML)' }),
    json: Flags.string({ char: 'j', description: 'Accepts data in the form of json as an input rather than read from a file', env: 'TUNNEL_INGRESS_VALIDATE_JSON' }),
  };

  async run(): Promise<{ ok: true; rules: number; unusedKeys: string[] }> {
    const config = loadIngressConfig(this.home, this.flags);
    if (config.unknownKeys.length > 0) {
      process.stdout.write(
        `Warning: unused keys detected in your config file. Here is a list of unused keys:\n${config.unknownKeys.join('\n')}\n`,
      );
    } else {
      process.stdout.write('OK\n');
    }
    return { ok: true, rules: config.ingress!.rules.length, unusedKeys: config.unknownKeys };
  }
}
