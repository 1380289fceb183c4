import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../../cli/base-command.js';
import { loadIngressConfig } from '../../../cli/ingress-config.js';
import { OxyError } from '../../../core/errors.js';
import { describeRule } from '../../../engine/connector/ingress.js';

export default class IngressRule extends BaseCommand<typeof IngressRule> {
  static summary = 'Check which ingress rule matches a given request URL';
  static description =
    "Check which ingress rule matches a given request URL. Ingress rules match a request's hostname and path. Hostname is " +
    'optional and is either a full hostname like `www.example.com` or a hostname with a `*` for its subdomains, e.g. ' +
    '`*.example.com`. Path is optional and matches a regular expression, like `/[a-zA-Z0-9_]+.html`';
  static examples = ['<%= config.bin %> tunnel ingress rule --config ./config.yml https://app.example.com/static/a.html'];
  static args = { url: Args.string({ description: 'The request URL to test', required: true }) };
  static flags = { config: Flags.string({ description: 'Path to the config file (YAML)', env: 'TUNNEL_CONFIG' }) };

  async run(): Promise<{ rule: number; hostname?: string; path?: string; service: string }> {
    let url: URL;
    try {
      url = new URL(this.args.url);
    } catch {
      throw new OxyError('OXY_ERR_INVALID_URL', `${this.args.url} doesn't have a hostname, consider adding a scheme`);
    }
    const { config } = await loadIngressConfig(this.home, { config: this.flags.config }, 'Using rules from');
    // cloudflared numbers from 0 here ("Matched rule #0"), and matches Hostname() and Path.
    const rule = config.ingress!.match(url.hostname, decodeURIComponent(url.pathname));
    process.stdout.write(`Matched rule #${rule.index}\n${describeRule(rule)}\n`);
    return { rule: rule.index, hostname: rule.hostname, path: rule.pathText, service: rule.serviceText };
  }
}
