import { expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { IpEdge } from '../../../src/engine/edge/ip/index.js';
import { TcpDowngrader } from '../../../src/engine/netns/index.js';

privilegedDescribe('downgrader sharing the edge’s namespace, wired in process (openSession)', () => {
  it('echoes through downgrade → edge session → upgrade, both TUNs in one unnamed namespace', async () => {
    const edge = await IpEdge.create();
    const downgrader = await TcpDowngrader.create({ ns: edge.ns });
    try {
      const context = { tenant: 'inproc', vnet: '' };
      let session: ReturnType<typeof downgrader.session> | undefined;
      // Each side's output is the other's input; copies, since the TUN batches are views.
      const edgeSession = edge.openSession(context, (packet) => session!.receive(Buffer.from(packet)));
      session = downgrader.session(context, (packet) => edgeSession.receive(Buffer.from(packet)));
      const socket = await session.connect({ src: '198.18.1.1', dst: '198.18.2.2', dstPort: 7 });
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      const ended = new Promise((r) => socket.once('end', r));
      socket.end('same namespace');
      await ended;
      expect(Buffer.concat(chunks).toString()).toBe('same namespace');
      expect(edge.table.stats.started).toBe(1);
      expect(downgrader.table.stats.started).toBe(1);
    } finally {
      downgrader.close();
      edge.close();
    }
  });
});
