import { Command, Errors, Flags, type Interfaces } from '@oclif/core';
import { stripVTControlCharacters as stripAnsi } from 'node:util';
import { isOxyError } from '../core/errors.js';
import { resolveHome } from '../core/common.js';
import { Store, storeUrlFor } from '../store/index.js';
import { renderDocument, type OutputFormat } from './output.js';

export type CommandFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>;
export type CommandArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>;

/**
 * Every command: flags and args parsed once in init(), `--home` picks the data directory,
 * the store opens on first use and closes at the end, and an OxyError prints its message
 * on stderr with its exit code (no stack trace: the message says what was wrong and what
 * to do).
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static baseFlags = {
    home: Flags.string({
      description: 'Data directory holding oxy.db and tunnel credentials [default: $OXY_HOME or ~/.oxyctl]',
      helpGroup: 'GLOBAL',
    }),
    store: Flags.string({
      description: 'The store: sqlite:PATH or postgres://USER@HOST/DB [default: $OXY_STORE or sqlite:<home>/oxy.db]',
      helpGroup: 'GLOBAL',
    }),
  };

  protected flags!: CommandFlags<T>;
  protected args!: CommandArgs<T>;
  /** Every positional argument, for commands that take several (`strict = false`). */
  protected positionals!: string[];
  /** Flags given on the command line or by environment (not defaults): a config file never overrides these. */
  protected explicitFlags!: Set<string>;
  #store?: Promise<Store>;

  async init(): Promise<void> {
    await super.init();
    const ctor = this.ctor as typeof BaseCommand;
    const { flags, args, argv, metadata } = await this.parse({
      flags: ctor.flags,
      baseFlags: ctor.baseFlags,
      args: ctor.args,
      strict: ctor.strict,
    });
    this.flags = flags as CommandFlags<T>;
    this.args = args as CommandArgs<T>;
    this.positionals = argv as string[];
    this.explicitFlags = new Set(Object.keys(flags).filter((k) => (flags as Record<string, unknown>)[k] !== undefined && !metadata.flags[k]?.setFromDefault));
  }

  protected get home(): string {
    return resolveHome(this.flags.home);
  }

  /** The store, opened (and migrated) on first use. */
  protected get store(): Promise<Store> {
    return this.openStore();
  }

  /** Opens the store; `fallbackUrl` (a config file's `store:`) counts after --store and OXY_STORE. */
  protected openStore(fallbackUrl?: string): Promise<Store> {
    this.#store ??= Store.open({ home: this.home, url: storeUrlFor(this.home, this.flags.store, fallbackUrl) });
    return this.#store;
  }

  /** Prints a document (`--output`) or the human rendering. */
  protected async print(format: OutputFormat | undefined, value: unknown, human: () => string | Promise<string>): Promise<void> {
    process.stdout.write(format ? await renderDocument(format, value) : await human());
  }

  /**
   * A failure: with `--output json|yaml` the document `{error: {code, message}}` on stdout
   * (parse errors too, as OXY_ERR_USAGE), so scripts branch on the code; in text the message
   * on stderr as cloudflared words it, and the code after it only with `--loglevel debug`.
   */
  protected async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    const format = this.#outputFormat();
    if (format && !(err instanceof Errors.ExitError)) {
      const code = isOxyError(err) ? err.code : err instanceof Errors.CLIError ? 'OXY_ERR_USAGE' : 'OXY_ERR_INTERNAL';
      const message = err instanceof Errors.CLIError && !isOxyError(err) ? stripAnsi(err.message) : err.message;
      process.stdout.write(await renderDocument(format, { error: { code, message } }));
      this.exit(isOxyError(err) ? err.exitCode : (err.oclif?.exit ?? 1));
    }
    if (isOxyError(err)) {
      process.stderr.write(this.#debug() ? `${err.message} [${err.code}]\n` : `${err.message}\n`);
      this.exit(err.exitCode);
    }
    return super.catch(err);
  }

  /** `--output`/`-o`, read from the parsed flags or, when parsing failed, from argv. */
  #outputFormat(): OutputFormat | undefined {
    const parsed = (this.flags as { output?: OutputFormat } | undefined)?.output;
    if (parsed) return parsed;
    const value = rawFlag(this.argv, ['--output', '-o']);
    return value === 'json' || value === 'yaml' ? value : undefined;
  }

  #debug(): boolean {
    const parsed = (this.flags as { loglevel?: string } | undefined)?.loglevel;
    return (parsed ?? rawFlag(this.argv, ['--loglevel'])) === 'debug';
  }

  protected async finally(err: Error | undefined): Promise<unknown> {
    const store = await this.#store?.catch(() => undefined);
    await store?.close();
    return super.finally(err);
  }
}

/** The value of a flag in raw argv (`--flag v`, `--flag=v`, `-o v`, `-ov`), for errors raised before parsing ended. */
function rawFlag(argv: string[], names: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') break;
    for (const name of names) {
      if (arg === name) return argv[i + 1];
      if (arg.startsWith(`${name}=`)) return arg.slice(name.length + 1);
      if (name.length === 2 && arg.startsWith(name) && !arg.startsWith('--')) return arg.slice(2);
    }
  }
  return undefined;
}
