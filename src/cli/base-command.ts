import { Command, Flags, type Interfaces } from '@oclif/core';
import { isOxyError } from '../core/errors.js';
import { resolveHome } from '../core/common.js';
import { Store } from '../store/index.js';
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
  };

  protected flags!: CommandFlags<T>;
  protected args!: CommandArgs<T>;
  /** Every positional argument, for commands that take several (`strict = false`). */
  protected positionals!: string[];
  #store?: Store;

  async init(): Promise<void> {
    await super.init();
    const ctor = this.ctor as typeof BaseCommand;
    const { flags, args, argv } = await this.parse({
      flags: ctor.flags,
      baseFlags: ctor.baseFlags,
      args: ctor.args,
      strict: ctor.strict,
    });
    this.flags = flags as CommandFlags<T>;
    this.args = args as CommandArgs<T>;
    this.positionals = argv as string[];
  }

  protected get home(): string {
    return resolveHome(this.flags.home);
  }

  protected get store(): Store {
    this.#store ??= Store.open(this.home);
    return this.#store;
  }

  /** Prints a document (`--output`) or the human rendering. */
  protected async print(format: OutputFormat | undefined, value: unknown, human: () => string | Promise<string>): Promise<void> {
    process.stdout.write(format ? await renderDocument(format, value) : await human());
  }

  protected async catch(err: Error & { exitCode?: number }): Promise<unknown> {
    if (isOxyError(err)) {
      process.stderr.write(`${err.message}\n`);
      this.exit(err.exitCode);
    }
    return super.catch(err);
  }

  protected async finally(err: Error | undefined): Promise<unknown> {
    this.#store?.close();
    return super.finally(err);
  }
}
