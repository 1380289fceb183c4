import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag, serviceRootFlag } from '../../cli/flags.js';
import { installService, serviceReport, type ServiceResult } from '../../cli/service.js';

export default class ServiceInstall extends BaseCommand<typeof ServiceInstall> {
  static summary = 'Install oxyctl as a system service (systemd)';
  static description =
    'Writes /etc/systemd/system/oxyctl.service, which runs the tunnel connector (oxyctl tunnel run) as a system service, then ' +
    'enables and starts it when systemd is running. The tunnel comes from --token (kept in /etc/oxyctl/tunnel.env, mode 0600, ' +
    "never in the unit or the process arguments) or from --config (a config file naming 'tunnel' and 'credentials-file'; " +
    'default: config.yml in the data directory). With --edge it writes oxyctl-edge.service, which runs oxyctl edge run. ' +
    'Services keep their data in /var/lib/oxyctl. With --root the files go into another tree (an image being built) and the unit ' +
    'is enabled offline. Must run as root on the live system.';
  static examples = [
    '<%= config.bin %> service install --token "$(oxyctl tunnel token example)"',
    '<%= config.bin %> service install --config /etc/oxyctl/config.yml',
    '<%= config.bin %> service install --edge',
    '<%= config.bin %> service install --root /srv/image --token "$TOKEN"',
  ];
  static args = { token: Args.string({ description: 'The tunnel token, as cloudflared takes it (same as --token)' }) };
  static flags = {
    token: Flags.string({ description: "The tunnel token, from 'oxyctl tunnel token'", exclusive: ['config', 'edge'] }),
    config: Flags.string({
      description: "Config file naming 'tunnel' and 'credentials-file' [default: config.yml in the data directory]",
      exclusive: ['edge'],
    }),
    edge: Flags.boolean({ description: 'Install the edge service (oxyctl-edge.service) instead of the connector' }),
    root: serviceRootFlag,
    output: outputFlag,
  };

  async run(): Promise<ServiceResult> {
    if (this.args.token !== undefined && (this.flags.token !== undefined || this.flags.config !== undefined || this.flags.edge)) {
      this.error('The token argument cannot be combined with --token, --config or --edge.', { exit: 2 });
    }
    const result = installService({
      kind: this.flags.edge ? 'edge' : 'connector',
      token: this.args.token ?? this.flags.token,
      configFile: this.flags.config,
      home: this.home,
      root: this.flags.root,
    });
    const report = serviceReport(result, 'installed');
    if (report.notice) process.stderr.write(`${report.notice}\n`);
    await this.print(this.flags.output, result, () => report.text);
    return result;
  }
}
