/**
 * HA connections over several edges. Each slot has an edge of its own, its home: slot i on
 * edge i mod n (4 connections over 2 edges: 2 + 2). When the home edge fails — a dial fails,
 * or the connection to it drops — the slot moves to the next edge for its next dial, so the
 * connections of a dead edge land on the survivors (cloudflared's supervisor likewise picks a
 * different address for a connection index after a failure).
 *
 * The way back is the supervisor's (supervisor.ts): a slot away from home dials its home edge
 * now and then, with backoff, and moves back make-before-break once the edge answers and
 * registers it. An edge that keeps coming and going is damped: each return that did not last
 * STABLE_MS doubles the wait before the next one, so a crash-looping edge is not handed the
 * same connections over and over.
 *
 * An edge that refuses the tunnel (its CA does not match the pin, or it refuses the registration:
 * another store, a secret it does not know) is remembered as refusing until it registers a slot
 * again: slots leave it for edges that do not refuse, and only when every edge refuses is the
 * refusal final (the supervisor stops, as it does with one edge).
 */
import type { Dialer } from './supervisor.js';

/** A return that lasted this long proves the edge steady again: the damping resets. */
export const STABLE_MS = 30_000;

/** When a slot away from home tries its home edge again: backoff between tries, and damping after flaps. */
export interface ReturnTiming {
  /** First pause before dialing home after the slot moved away; doubled after each failed try. */
  firstMs: number;
  /** Largest pause between two tries (the longest an edge that came back waits for its connections). */
  maxMs: number;
  /** Largest hold before a return once the home edge flapped (a return that did not last STABLE_MS). */
  maxHoldMs: number;
}

export const RETURN_TIMING: ReturnTiming = { firstMs: 1000, maxMs: 10_000, maxHoldMs: 5 * 60_000 };

export class EdgeSpread {
  readonly #at = new Map<number, number>();
  /** Per slot: when it last moved home, and how long it must hold off before the next return. */
  readonly #returns = new Map<number, { at: number; holdMs: number }>();
  /** Edges whose last answer was a refusal, with it. */
  readonly #refusing = new Map<number, Error>();

  constructor(
    readonly dialers: Dialer[],
    /** HOST:PORT of each edge, for logs. */
    readonly names: string[],
    readonly timing: ReturnTiming = RETURN_TIMING,
  ) {}

  /** The edge slot `connIndex` belongs on. */
  home(connIndex: number): number {
    return connIndex % this.dialers.length;
  }

  /** The edge slot `connIndex` dials next. */
  at(connIndex: number): number {
    return this.#at.get(connIndex) ?? this.home(connIndex);
  }

  /** Whether the slot serves from another edge than its own. */
  away(connIndex: number): boolean {
    return this.at(connIndex) !== this.home(connIndex);
  }

  /** Dials the slot's current edge; a failure moves the slot to the next edge for its next dial. */
  readonly dial: Dialer = async (connIndex, signal) => {
    const edge = this.at(connIndex);
    try {
      return await this.dialers[edge](connIndex, signal);
    } catch (err) {
      this.#move(connIndex, edge);
      throw err;
    }
  };

  /** The slot's connection to `edge` dropped (not by us): its next dial goes to the next edge. */
  lost(connIndex: number, edge: number): void {
    if (this.dialers.length === 1 || this.at(connIndex) !== edge) return;
    this.#move(connIndex, edge);
  }

  /**
   * `edge` refused the slot: it is refusing until it registers one (`accepted`), and the slot's
   * next dial goes to an edge that does not refuse. `first`: the edge was not refusing before
   * (worth a loud log); `all`: every edge refuses now.
   */
  refused(connIndex: number, edge: number, err: Error): { first: boolean; all: boolean } {
    const first = !this.#refusing.has(edge);
    this.#refusing.set(edge, err);
    const at = this.at(connIndex);
    if (this.dialers.length > 1 && at === edge) this.#move(connIndex, edge);
    // A failed dial moved the slot on already, maybe to another edge that refuses.
    else if (this.#refusing.has(at)) this.#at.set(connIndex, this.#next(edge));
    return { first, all: this.#refusing.size === this.dialers.length };
  }

  /** `edge` registered a slot: it does not refuse (any more). True when it did. */
  accepted(edge: number): boolean {
    return this.#refusing.delete(edge);
  }

  /** Whether `edge`'s last answer was a refusal. */
  refusing(edge: number): boolean {
    return this.#refusing.has(edge);
  }

  /** Every edge's refusal, for the error that stops the connector: `HOST:PORT: message; …`. */
  refusals(): string {
    return [...this.#refusing].map(([edge, err]) => `${this.names[edge]}: ${err.message}`).join('; ');
  }

  /** The edge after `from` that does not refuse (`from` itself if it is the only one), else simply the next one. */
  #next(from: number): number {
    const n = this.dialers.length;
    for (let k = 1; k <= n; k++) if (!this.#refusing.has((from + k) % n)) return (from + k) % n;
    return (from + 1) % n;
  }

  #move(connIndex: number, from: number): void {
    this.#at.set(connIndex, this.#next(from));
    // Lost home soon after coming back: the home edge flaps, so hold off longer before the next return.
    const r = this.#returns.get(connIndex);
    if (r && from === this.home(connIndex)) {
      if (Date.now() - r.at < STABLE_MS) r.holdMs = Math.min(this.timing.maxHoldMs, Math.max(this.timing.maxMs, r.holdMs * 2));
      else r.holdMs = 0;
    }
  }

  /** How long a slot that just moved away waits before its first try home: longer after flaps. */
  holdMs(connIndex: number): number {
    return Math.max(this.timing.firstMs, this.#returns.get(connIndex)?.holdMs ?? 0);
  }

  /** Dials the slot's home edge (a try to move back; the slot stays where it is until `returned`). */
  dialHome(connIndex: number, signal: AbortSignal): ReturnType<Dialer> {
    return this.dialers[this.home(connIndex)](connIndex, signal);
  }

  /** The slot serves from its home edge again. */
  returned(connIndex: number): void {
    this.#at.delete(connIndex);
    const r = this.#returns.get(connIndex);
    this.#returns.set(connIndex, { at: Date.now(), holdMs: r?.holdMs ?? 0 });
  }
}
