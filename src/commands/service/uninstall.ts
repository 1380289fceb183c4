import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag, serviceRootFlag } from '../../cli/flags.js';
import { uninstallService, serviceReport, type ServiceResult } from '../../cli/service.js';

export default class ServiceUninstall extends BaseCommand<typeof ServiceUninstall> {
  static summary = 'Uninstall the oxyctl system service';
  static description =
    'Stops and disables oxyctl.service (or oxyctl-edge.service with --edge) when systemd is running, then removes the unit ' +
    "that 'oxyctl service install' wrote and, for the connector, the token file /etc/oxyctl/tunnel.env. Units shipped by the " +
    'package are left alone. The data directory /var/lib/oxyctl is kept.';
  static examples = ['<%= config.bin %> service uninstall', '<%= config.bin %> service uninstall --edge'];
  static flags = {
    edge: Flags.boolean({ description: 'Uninstall the edge service (oxyctl-edge.service) instead of the connector' }),
    root: serviceRootFlag,
    output: outputFlag,
  };

  async run(): Promise<ServiceResult> {
    const result = uninstallService({ kind: this.flags.edge ? 'edge' : 'connector', root: this.flags.root });
    const report = serviceReport(result, 'uninstalled');
    if (report.notice) process.stderr.write(`${report.notice}\n`);
    await this.print(this.flags.output, result, () => report.text);
    return result;
  }
}
