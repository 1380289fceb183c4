import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { renderTable } from '../../cli/output.js';
import { listEdges, type EdgeDocument } from '../../core/edges.js';

export default class EdgeList extends BaseCommand<typeof EdgeList> {
  static summary = 'List the edges running on this store';
  static description =
    'Every running edge records itself in the store (its location and tunnel listener) and renews a heartbeat every ' +
    '5 s; this lists those whose heartbeat is fresh, with the tunnel connections each holds. ' +
    'An edge run with --workers N is one row: WORKERS its live worker processes, CONNECTIONS their sum ' +
    "(-o json|yaml lists each worker's id and connections). An edge that stopped " +
    "or died drops out within 15 s, and so do its connections in 'tunnel list' and 'tunnel info'. With a shared " +
    'PostgreSQL store (--store postgres://…) that is every edge of the deployment.';
  static examples = ['<%= config.bin %> edge list', '<%= config.bin %> edge list -o json --store postgres://oxy@db/oxy'];
  static flags = { output: outputFlag };

  async run(): Promise<EdgeDocument[]> {
    const docs = await listEdges(await this.store);
    await this.print(this.flags.output, docs, () =>
      docs.length === 0
        ? "No edge is running on this store; start one with 'oxyctl edge run'.\n"
        : renderTable(
            ['ID', 'LOCATION', 'TUNNEL LISTENER', 'STARTED', 'HEARTBEAT', 'WORKERS', 'CONNECTIONS'],
            docs.map((e) => [e.id, e.location, e.tunnel_address, e.started_at, e.heartbeat_at, String(e.workers.length), String(e.connections)]),
          ),
    );
    return docs;
  }
}
