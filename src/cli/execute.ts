/**
 * The CLI's entry for the bundled build: oclif's execute, from the same copy the commands use,
 * after cloudflared-style command lines are rewritten into ones oclif parses (cli/argv.ts).
 */
import { readFileSync } from 'node:fs';
import { execute as oclifExecute } from '@oclif/core';
import { packageRoot } from '../core/paths.js';
import { rewriteArgv, type ManifestCommand } from './argv.js';

export async function execute(options: { dir: string }): Promise<unknown> {
  const argv = process.argv.slice(2);
  if (argv.some((a) => a.startsWith('-'))) {
    let commands: Record<string, ManifestCommand> = {};
    try {
      commands = JSON.parse(readFileSync(`${packageRoot()}/oclif.manifest.json`, 'utf8')).commands;
    } catch {
      // No manifest (a development tree): argv goes to oclif unchanged, apart from no-effect flags.
    }
    const rewritten = rewriteArgv(argv, commands);
    for (const line of rewritten.notices) process.stderr.write(`${line}\n`);
    return oclifExecute({ ...options, args: rewritten.argv });
  }
  return oclifExecute(options);
}
