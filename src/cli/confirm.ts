import { OxyError } from '../core/errors.js';

/**
 * Destructive commands ask on a terminal; without one (scripts, CI) they refuse unless the
 * user already confirmed with --yes/--force, so nothing is deleted by accident.
 */
export async function confirmDestructive(question: string, confirmed: boolean): Promise<void> {
  if (confirmed) return;
  if (!process.stdin.isTTY || !process.stdout.isTTY) {
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
