import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { collectDiag, findLocalConnector } from '../../engine/observe/diag.js';

export default class TunnelDiag extends BaseCommand<typeof TunnelDiag> {
  static summary = 'Creates a diagnostic report from a local oxyctl connector';
  static description =
    "Collects a running connector's configuration and tunnel state (/diag/*), its metrics, its log file (when it runs " +
    "with --logfile or --log-directory) and this host's system information into oxyctl-diag-<time>.tar.gz in the " +
    "current directory, as cloudflared's tunnel diag does (no network traces, container or pod logs here).";
  static examples = [
    '<%= config.bin %> tunnel diag',
    '<%= config.bin %> tunnel diag --metrics 127.0.0.1:20241',
    '<%= config.bin %> tunnel diag --metrics 127.0.0.1:20241 --no-diag-logs',
  ];
  static flags = {
    metrics: Flags.string({
      description: "HOST:PORT of the connector's metrics server [default: the one connector on 127.0.0.1:20241-20245]",
      env: 'TUNNEL_METRICS',
    }),
    'no-diag-logs': Flags.boolean({ description: 'Log collection will not be performed' }),
    'no-diag-metrics': Flags.boolean({ description: 'Metric collection will not be performed' }),
    'no-diag-system': Flags.boolean({ description: 'System information collection will not be performed' }),
    'no-diag-runtime': Flags.boolean({ description: 'Accepted for cloudflared compatibility (there is no Go runtime to profile)' }),
    'no-diag-network': Flags.boolean({ description: 'Accepted for cloudflared compatibility (no network traces are taken)' }),
  };

  async run(): Promise<{ path: string; entries: string[] }> {
    const result = await collectDiag({
      metrics: this.flags.metrics ?? (await findLocalConnector()),
      outDir: process.cwd(),
      noLogs: this.flags['no-diag-logs'],
      noMetrics: this.flags['no-diag-metrics'],
      noSystem: this.flags['no-diag-system'],
    });
    process.stdout.write(`Diagnostic file written: ${result.path}\n`);
    return result;
  }
}
