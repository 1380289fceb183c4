// A listener that throws inside a readiness callback must surface as Node's
// 'uncaughtException' (like an exception in a net.Socket 'data' listener), not
// terminate the process from C++ or vanish. Run in a child process so the test
// runner's own handler is not involved.
import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';

import { addonPath } from '../../../src/engine/native/binding.js';

it("an exception thrown by a JS callback becomes 'uncaughtException'", () => {
  const script = `
    const addon = require(${JSON.stringify(addonPath())});
    process.on('uncaughtException', (err) => {
      console.log('caught:' + err.message);
      process.exit(0);
    });
    const [a, b] = addon.seqpacketPair();
    const options = { maxMessageSize: 1024, batchSize: 8 };
    const reader = new addon.SeqpacketSocket(b, options);
    const writer = new addon.SeqpacketSocket(a, options);
    const noop = () => {};
    reader.start(() => { throw new Error('listener failed'); }, noop, noop, noop);
    reader.setEvents(true, false);
    writer.send(Buffer.from('x'));
    setTimeout(() => { console.log('no exception'); process.exit(1); }, 2000);
  `;
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
  expect(result.stdout.trim()).toBe('caught:listener failed');
  expect(result.status).toBe(0);
});
