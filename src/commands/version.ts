import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';

export default class Version extends BaseCommand<typeof Version> {
  static summary = 'Print the version';
  static description = "Prints oxyctl's version, as `cloudflared version` does (`--short`: the number alone). `oxyctl --version` and `-v` work too.";
  static examples = ['<%= config.bin %> version', '<%= config.bin %> version --short'];
  static flags = { short: Flags.boolean({ char: 's', description: 'print just the version number' }) };

  async run(): Promise<{ version: string }> {
    const v = this.config.version;
    process.stdout.write(this.flags.short ? `${v}\n` : `oxyctl version ${v} (node ${process.version} ${process.platform}-${process.arch})\n`);
    return { version: v };
  }
}
