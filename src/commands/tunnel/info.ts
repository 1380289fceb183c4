import { Args } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { renderTable } from '../../cli/output.js';
import { tunnelDocument, type TunnelDocument } from '../../cli/documents.js';
import { tunnelInfo } from '../../core/tunnels.js';

export default class TunnelInfo extends BaseCommand<typeof TunnelInfo> {
  static summary = 'List details about the active connectors for a tunnel';
  static description = 'Shows a tunnel (by name or ID) and every connection its connectors hold to the edge.';
  static examples = ['<%= config.bin %> tunnel info example', '<%= config.bin %> tunnel info -o json example'];
  static args = { tunnel: Args.string({ description: 'ID or name of the tunnel', required: true }) };
  static flags = { output: outputFlag };

  async run(): Promise<TunnelDocument> {
    const doc = tunnelDocument(tunnelInfo(this.store, this.args.tunnel));
    await this.print(this.flags.output, doc, async () => {
      const head = `NAME:     ${doc.name}\nID:       ${doc.id}\nCREATED:  ${doc.created_at}\n\n`;
      if (doc.connections.length === 0) return `${head}Your tunnel ${doc.id} does not have any active connection.\n`;
      return (
        head +
        (await renderTable(
          ['CONNECTOR ID', 'CONNECTION ID', 'CREATED', 'ARCHITECTURE', 'VERSION', 'PROTOCOL', 'ORIGIN IP', 'EDGE'],
          doc.connections.map((c) => [
            c.connector_id,
            c.id,
            c.opened_at,
            c.arch,
            c.client_version,
            c.protocol,
            c.origin_ip,
            `${c.conn_index}x${c.colo_name}`,
          ]),
        ))
      );
    });
    return doc;
  }
}
