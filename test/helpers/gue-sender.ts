/**
 * A GUE sender inside a test namespace (gue-sender.mjs, on the built engine in dist/), driven
 * one JSON line at a time: authenticated requests, forged and replayed datagrams, raw bytes.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { TestNetns } from './netns.js';

const SCRIPT = new URL('./gue-sender.mjs', import.meta.url).pathname;

export class GueSender {
  private readonly lines: AsyncIterator<string>;
  private constructor(readonly child: ChildProcess) {
    child.stderr?.on('data', (d) => process.stderr.write(d));
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }

  /** Starts the sender in `ns`, toward the edge's GUE (and other UDP ports) at `host`. */
  static start(ns: TestNetns, host: string, guePort: number): GueSender {
    return new GueSender(ns.spawn(process.execPath, [SCRIPT, host, String(guePort)], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  async do<T = Record<string, unknown>>(command: Record<string, unknown>): Promise<T> {
    this.child.stdin!.write(`${JSON.stringify(command)}\n`);
    const { value, done } = await this.lines.next();
    if (done) throw new Error('the GUE sender exited');
    return JSON.parse(value as string) as T;
  }

  async stop(): Promise<void> {
    this.child.stdin?.end();
    if (this.child.exitCode === null && this.child.signalCode === null) await new Promise((r) => this.child.once('exit', r));
  }
}
