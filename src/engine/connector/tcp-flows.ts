/**
 * The connector's side of a `tcp-flows` stream (protocol/tcp-flows.ts): each OPEN is a private
 * TCP flow, admitted and dialled as a `tcp` stream's would be; its ANSWER goes before any other
 * record of the flow, and the next OPEN may come once the flow ended both ways. The stream ends
 * when the edge ends it (an idle stream it no longer keeps).
 */
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { OxyError } from '../../core/errors.js';
import { socketFd } from '../native/index.js';
import { encodeResponseHeader, ResponseStatus, type StreamRequestHeader } from '../protocol/stream-header.js';
import { decodeFlowHeader, FlowLink, FlowRecord, FlowRecordParser, writeFlowRecord, type FlowRecordSink } from '../protocol/tcp-flows.js';
import type { FdPump, TunnelStream } from '../transport/types.js';
import { FLOW_UNSENT } from '../util/pump.js';

/**
 * A private TCP flow's dialled socket is pumped by the addon where the stream can (QUIC on ngtcp2):
 * a `tcp` stream's plainly (private.ts), a `tcp-flows` stream's flow with its records read and
 * written there. Any OXY_QUIC_PUMP value (`records`, `heads`, `fd`, `0`) keeps them in JS.
 */
export const PUMP_FLOWS = (process.env.OXY_QUIC_PUMP ?? '') === '';
const debug = debuglog('oxy:connector:private');

const OK_ANSWER = encodeResponseHeader({ status: ResponseStatus.OK, message: '', metadata: [] });

/** What the flows need of the private off-ramp (private.ts). */
export interface FlowOfframp {
  check(header: StreamRequestHeader): Promise<{ host: string; port: number } | { status: number; why: string }>;
  dial(dest: { host: string; port: number }): Promise<Socket>;
  flowStarted(): void;
  flowEnded(): void;
}

export class TcpFlowServer implements FlowRecordSink {
  readonly done: Promise<void>;
  readonly #parser = new FlowRecordParser(this, FlowRecord.OPEN);
  #link: FlowLink | PumpedFlow | undefined;
  #answered = true;
  #finish!: () => void;
  #over = false;

  constructor(
    private readonly stream: TunnelStream,
    private readonly offramp: FlowOfframp,
  ) {
    this.done = new Promise((resolve) => (this.#finish = resolve));
    stream.on('data', (chunk: Buffer) => {
      try {
        this.#parser.push(chunk);
      } catch {
        // Hostile or broken input: the stream (and its flow) goes, reset.
        this.#stop(true);
      }
    });
    stream.on('end', () => this.#stop(false));
    stream.on('error', () => this.#stop(true));
    stream.on('close', () => this.#stop(true));
  }

  header(_type: number, payload: Buffer): void {
    if (this.#link && !this.#link.released) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'A tcp-flows OPEN before the previous flow ended');
    const header = decodeFlowHeader(payload, 'request');
    if (header.kind !== 'tcp') throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `A tcp-flows OPEN of kind ${header.kind}`);
    this.offramp.flowStarted();
    const link = new FlowLink(this.stream, FLOW_UNSENT, FLOW_UNSENT, () => this.offramp.flowEnded());
    this.#link = link;
    this.#answered = false;
    void this.#open(header, link);
  }

  async #open(header: StreamRequestHeader, link: FlowLink): Promise<void> {
    const dest = await this.offramp.check(header);
    if (link.released) return;
    if (!('host' in dest)) return this.#refuse(link, dest.status, dest.why);
    const socket = await this.offramp.dial(dest).catch((err: Error) => err);
    if (socket instanceof Error) {
      if (!link.released) this.#refuse(link, ResponseStatus.DIAL_FAILED, socket.message);
      return;
    }
    // The edge reset the flow meanwhile (its answer and RESET went): nothing is written any more.
    if (link.released || this.#over) return void socket.destroy();
    this.#answer(ResponseStatus.OK, '');
    this.#link = (PUMP_FLOWS && PumpedFlow.start(this.stream, socket, link, this.#parser, () => this.offramp.flowEnded())) || link;
    if (this.#link === link) link.attach(socket);
  }

  #answer(status: number, message: string): void {
    this.#answered = true;
    writeFlowRecord(this.stream, FlowRecord.ANSWER, status === ResponseStatus.OK ? OK_ANSWER : encodeResponseHeader({ status, message, metadata: [] }));
  }

  #refuse(link: FlowLink, status: number, why: string): void {
    this.#answer(status, why);
    link.abort();
  }

  // Between flows (after this side finished one), a late RESET of the edge's is dropped.
  data(bytes: Buffer): void {
    this.#link?.data(bytes);
  }

  end(): void {
    this.#link?.end();
  }

  /** A RESET before the answer is answered first: the edge reads nothing of a flow before its ANSWER. */
  reset(): void {
    const link = this.#link;
    if (!link || link.released) return;
    if (!this.#answered) this.#answer(ResponseStatus.DIAL_FAILED, 'The flow was reset before it was answered');
    link.reset();
  }

  #stop(reset: boolean): void {
    if (this.#over) return;
    this.#over = true;
    const link = this.#link;
    if (link && !link.released) {
      this.offramp.flowEnded();
      link.kill();
    }
    if (reset) this.stream.destroy();
    else this.stream.end();
    this.#finish();
  }
}

/**
 * A flow whose socket the transport pumps (FdPumpEvents.flows): from the hand-over on, the addon
 * reads the flow's records and writes the socket's; until then what the stream's reader gets of the
 * flow is passed to the pump here. Ends when the addon says both terminators crossed (`flowDone`),
 * or with the stream (`kill`).
 */
class PumpedFlow {
  #released = false;
  #gotTerm = false;
  #paused = false;
  #pump!: FdPump;

  private constructor(
    private readonly stream: TunnelStream,
    private readonly done: () => void,
  ) {}

  /**
   * Pumps `socket` (just dialled: it has read nothing) as the flow `link` was waiting for, with the
   * peer's DATA and END that came meanwhile. Undefined when the stream cannot pump it (`link` then
   * takes the socket).
   */
  static start(stream: TunnelStream, socket: Socket, link: FlowLink, parser: FlowRecordParser, done: () => void): PumpedFlow | undefined {
    const fd = socketFd(socket);
    if (fd === undefined || !stream.pumpTo) return undefined;
    const flow = new PumpedFlow(stream, done);
    const pump = stream.pumpTo(fd, {
      flows: true,
      answer: () => undefined,
      end: () => undefined,
      drain: () => flow.#resume(),
      bodyLeft: () => parser.dataLeft,
      handOver: () => parser.handOver(),
      flowDone: () => flow.#finish(),
    });
    if (!pump) return undefined;
    flow.#pump = pump;
    debug('stream %d: tcp-flows flow pumped by the addon', stream.id);
    // The addon holds a duplicate: closing ours sends nothing to the host.
    socket.destroy();
    const early = link.handOff()!;
    for (const bytes of early.pending) flow.data(bytes);
    if (early.ended) flow.end();
    return flow;
  }

  get released(): boolean {
    return this.#released;
  }

  data(bytes: Buffer): void {
    if (this.#gotTerm || this.#released) return;
    if (!this.#pump.write(bytes, false) && !this.#paused) {
      this.#paused = true;
      this.stream.pause();
    }
  }

  end(): void {
    if (this.#gotTerm || this.#released) return;
    this.#gotTerm = true;
    this.#pump.end?.();
  }

  reset(): void {
    if (this.#released) return;
    this.#gotTerm = true;
    this.#pump.reset?.();
  }

  /** The stream failed or ended: the socket goes with it. */
  kill(): void {
    if (this.#released) return;
    this.#released = true;
    this.#pump.close();
    this.#resume();
  }

  #finish(): void {
    if (this.#released) return;
    this.#released = true;
    this.#resume();
    this.done();
  }

  #resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.stream.resume();
  }
}
