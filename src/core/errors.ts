/**
 * Every error a user or a caller can meet carries a stable `code`; callers branch on the
 * code, never on the message. `apiCode` is cloudflared's numeric API error code where
 * cloudflared has one (so `Failed to add route: code: 1014, …` reads the same).
 */
export class OxyError extends Error {
  readonly code: string;
  readonly apiCode?: number;
  /** Process exit code when this error ends a command. */
  readonly exitCode: number;

  constructor(code: string, message: string, options: { cause?: unknown; apiCode?: number; exitCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OxyError';
    this.code = code;
    this.apiCode = options.apiCode;
    this.exitCode = options.exitCode ?? 1;
  }
}

export function isOxyError(err: unknown, code?: string): err is OxyError {
  return err instanceof OxyError && (code === undefined || err.code === code);
}
