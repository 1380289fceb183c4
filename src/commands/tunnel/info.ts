import { Args } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { renderTable } from '../../cli/output.js';
import { connectionsCell, tunnelInfoDocument, type TunnelInfoDocument } from '../../cli/documents.js';
import { tunnelInfo } from '../../core/tunnels.js';

export default class TunnelInfo extends BaseCommand<typeof TunnelInfo> {
  static summary = 'List details about the active connectors for a tunnel';
  static description =
    'Shows a tunnel (by name or ID) and its connectors: one row per connector, its EDGE cell counting its connections per ' +
    'edge location ("2xfra, 2xlhr"). With -o json, the document cloudflared prints (createdAt, conns[].conns[]).';
  static examples = ['<%= config.bin %> tunnel info example', '<%= config.bin %> tunnel info -o json example'];
  static args = { tunnel: Args.string({ description: 'ID or name of the tunnel', required: true }) };
  static flags = { output: outputFlag };

  async run(): Promise<TunnelInfoDocument> {
    const doc = tunnelInfoDocument(await tunnelInfo(await this.store, this.args.tunnel));
    await this.print(this.flags.output, doc, async () => {
      if (doc.conns.length === 0) return `Your tunnel ${doc.id} does not have any active connection.\n`;
      const head = `NAME:     ${doc.name}\nID:       ${doc.id}\nCREATED:  ${doc.createdAt}\n\n`;
      return (
        head +
        (await renderTable(
          ['CONNECTOR ID', 'CREATED', 'ARCHITECTURE', 'VERSION', 'ORIGIN IP', 'EDGE'],
          doc.conns.map((c) => [c.id, c.run_at, c.arch, c.version, c.conns[0].origin_ip, connectionsCell(c.conns)]),
        ))
      );
    });
    return doc;
  }
}
