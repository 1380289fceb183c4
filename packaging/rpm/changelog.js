#!/usr/bin/env node
/**
 * Prints an RPM %changelog body from a Debian changelog (packaging/debian/changelog),
 * newest first:  * Sat Nov 21 2026 Name <mail> - 0.1.0-1  followed by the entry's lines.
 *   node packaging/rpm/changelog.js packaging/debian/changelog
 */
import { readFileSync } from 'node:fs';

const text = readFileSync(process.argv[2], 'utf8');
const entries = [];
let current;
for (const line of text.split('\n')) {
  const head = /^(\S+) \(([^)]+)\) /.exec(line);
  if (head) {
    current = { version: head[2], lines: [] };
    entries.push(current);
    continue;
  }
  const trailer = /^ -- (.+?)  (.+)$/.exec(line);
  if (trailer && current) {
    const d = new Date(trailer[2]);
    const day = d.toLocaleDateString('en-US', { weekday: 'short', month: 'short', day: '2-digit', year: 'numeric', timeZone: 'UTC' });
    const [weekday, month, dd, year] = day.replace(/,/g, '').split(' ');
    current.header = `* ${weekday} ${month} ${dd} ${year} ${trailer[1]} - ${current.version}-1`;
    continue;
  }
  if (current && line.trim())
    current.lines.push(
      line
        .replace(/^ {2}\* /, '- ')
        .replace(/^ {4}/, '  ')
        .replace(/%/g, '%%'),
    );
}
process.stdout.write(entries.map((e) => `${e.header}\n${e.lines.join('\n')}\n`).join('\n'));
