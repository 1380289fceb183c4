/**
 * What a command prints. Machine output (`--output json|yaml`) is the contract: only the
 * document goes to stdout. Human output is a table: aligned with a bold header on a
 * terminal, tab-separated when stdout is a pipe (so `cut -f` and `awk -F'\t'` work), and
 * never coloured when NO_COLOR is set or stdout is not a terminal.
 */
export type OutputFormat = 'json' | 'yaml';

export async function renderDocument(format: OutputFormat, value: unknown): Promise<string> {
  if (format === 'json') return `${JSON.stringify(value, null, 2)}\n`;
  const { stringify } = await import('yaml');
  return stringify(value);
}

export const useColor = (): boolean => Boolean(process.stdout.isTTY) && !('NO_COLOR' in process.env && process.env.NO_COLOR !== '');

export async function renderTable(headers: string[], rows: string[][]): Promise<string> {
  if (!process.stdout.isTTY) return [headers, ...rows].map((r) => `${r.join('\t')}\n`).join('');
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `${cells
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd()}\n`;
  let head = line(headers);
  if (useColor()) {
    const { default: chalk } = await import('chalk');
    head = chalk.bold(head);
  }
  return head + rows.map(line).join('');
}

/** cloudflared prints a missing time as "-". */
export const timeCell = (t: string | null | undefined): string => t || '-';
