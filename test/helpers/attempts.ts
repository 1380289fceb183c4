/**
 * What a polled request returned, for a wait's failure message: the last few results with the
 * time each came (since the first), so that "not served in 10 s" says whether the edge answered
 * 502, the request timed out, or the connection was reset.
 *
 *   const tries = new Attempts();
 *   const get = () => request(url).then((r) => tries.answer(r.statusCode, text), (err) => tries.error(err));
 *   await until(async () => (await get()) === '200 hello', 10_000, () => `the origin served; ${tries}`);
 */
export class Attempts {
  readonly #start = Date.now();
  readonly #last: string[] = [];
  #count = 0;

  constructor(private readonly keep = 6) {}

  /** Records an answer (its body cut to 80 characters in the record); returns `${status} ${body}`. */
  answer(status: number, body: string): string {
    this.#record(`${status} ${JSON.stringify(body.length > 80 ? `${body.slice(0, 80)}…` : body)}`);
    return `${status} ${body}`;
  }

  /** Records an error by its code (and its cause's: undici wraps the socket's); returns its message. */
  error(err: unknown): string {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    const cause = e.cause?.code ? ` (cause ${e.cause.code})` : '';
    this.#record(`${e.code ?? e.name ?? 'error'}${cause}: ${e.message}`);
    return e.message;
  }

  #record(what: string): void {
    this.#count++;
    this.#last.push(`+${((Date.now() - this.#start) / 1000).toFixed(1)} s ${what}`);
    if (this.#last.length > this.keep) this.#last.shift();
  }

  toString(): string {
    return `${this.#count} attempts, the last ${this.#last.length}: ${this.#last.join(' | ') || 'none'}`;
  }
}

/** The end of what a client read so far, for a failure message: its length and its last `n` characters. */
export const tail = (s: string, n = 240): string => `${s.length} bytes, ending ${JSON.stringify(s.length > n ? `…${s.slice(-n)}` : s)}`;
