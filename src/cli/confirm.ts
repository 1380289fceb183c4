import { OxyError } from '../core/errors.js';

/**
 * Destructive commands ask on a terminal. Without one (scripts, CI), the commands cloudflared
 * has (`tunnel delete`, `vnet delete`, `route ip delete`) go ahead as cloudflared does — it
 * never asks, and scripts written for it must keep working; oxyctl's own ones
 * (`warp revoke`, `withoutTerminal: 'refuse'`) refuse unless confirmed with --yes.
 */
export async function confirmDestructive(question: string, confirmed: boolean, withoutTerminal: 'proceed' | 'refuse' = 'proceed'): Promise<void> {
  if (confirmed) return;
  if (!process.stdin.isTTY || !process.stdout.isTTY) {
    if (withoutTerminal === 'proceed') return;
    throw new OxyError(
      'OXY_ERR_CONFIRMATION_REQUIRED',
      `${question} This deletes data and needs confirmation, but there is no terminal to ask on. Pass --yes to confirm.`,
    );
  }
  const { confirm } = await import('@inquirer/prompts');
  if (!(await confirm({ message: question, default: false }))) {
    throw new OxyError('OXY_ERR_ABORTED', 'Aborted: nothing was deleted.');
  }
}
