#!/usr/bin/env node
/**
 * Generates man/oxyctl.1 and one page per command (man/oxyctl-tunnel-route-ip-add.1 …)
 * from the command metadata in oclif.manifest.json (run `npm run build` first).
 *   node scripts/gen-man.js           write the pages
 *   node scripts/gen-man.js --check   exit 1 and name the stale pages if any differ
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const args = process.argv.slice(2);
const check = args.includes('--check');
const dirFlag = args.indexOf('--dir');
const manDir = dirFlag >= 0 ? args[dirFlag + 1] : join(root, 'man');

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const manifestPath = join(root, 'oclif.manifest.json');
if (!existsSync(manifestPath)) {
  console.error('oclif.manifest.json is missing: run `npm run build` first.');
  process.exit(2);
}
const { commands } = JSON.parse(readFileSync(manifestPath, 'utf8'));

/** roff-escape a line of text: backslashes, hyphens, and a leading dot or quote. */
const esc = (s = '') =>
  String(s)
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/^([.'])/gm, '\\&$1');
const words = (id) => id.split(':');
const pageName = (id) => ['oxyctl', ...words(id)].join('-');
const header = (name, summary) => `.TH ${name.toUpperCase()} 1 "" "oxyctl ${pkg.version}" "oxyctl manual"\n.SH NAME\n${esc(name)} \\- ${esc(summary)}\n`;
const example = (e, id) => (typeof e === 'string' ? e : e.command).replace(/<%= config.bin %>/g, 'oxyctl').replace(/<%= command.id %>/g, words(id).join(' '));

function commandPage(cmd) {
  const name = pageName(cmd.id);
  const argList = Object.values(cmd.args ?? {});
  const flags = Object.entries(cmd.flags ?? {}).filter(([, f]) => !f.hidden);
  const synopsis = [
    `.B oxyctl ${words(cmd.id).join(' ')}`,
    flags.length ? '[\\fIFLAGS\\fR]' : '',
    ...argList.map((a) => (a.required ? `\\fI${a.name.toUpperCase()}\\fR` : `[\\fI${a.name.toUpperCase()}\\fR]`)),
    cmd.strict === false ? '...' : '',
  ]
    .filter(Boolean)
    .join(' ');
  let out = header(name, cmd.summary ?? cmd.description ?? '');
  out += `.SH SYNOPSIS\n${synopsis}\n`;
  if (cmd.description) out += `.SH DESCRIPTION\n${esc(cmd.description)}\n`;
  if (argList.length) {
    out += '.SH ARGUMENTS\n';
    for (const a of argList) out += `.TP\n.I ${a.name.toUpperCase()}\n${esc(a.description)}\n`;
  }
  if (flags.length) {
    out += '.SH OPTIONS\n';
    for (const [fname, f] of flags) {
      const names = [f.char ? `\\-${f.char}` : '', `\\-\\-${esc(fname)}`, ...(f.aliases ?? []).map((a) => `\\-\\-${esc(a)}`)].filter(Boolean);
      const value = f.type === 'option' ? ` \\fI${f.options ? f.options.join('|') : (f.helpValue ?? 'VALUE')}\\fR` : '';
      out += `.TP\n\\fB${names.join('\\fR, \\fB')}\\fR${value}\n${esc(f.description ?? f.summary ?? '')}\n`;
    }
  }
  if (cmd.aliases?.length) out += `.SH ALIASES\n${cmd.aliases.map((a) => esc(`oxyctl ${words(a).join(' ')}`)).join('\n.br\n')}\n`;
  if (cmd.examples?.length) out += `.SH EXAMPLES\n.nf\n${cmd.examples.map((e) => esc(example(e, cmd.id))).join('\n')}\n.fi\n`;
  out += `.SH SEE ALSO\n.BR oxyctl (1)\n`;
  return out;
}

function mainPage(ids) {
  let out = header('oxyctl', pkg.description);
  out += '.SH SYNOPSIS\n.B oxyctl\n\\fICOMMAND\\fR [\\fIFLAGS\\fR] [\\fIARGS\\fR]\n';
  out +=
    '.SH DESCRIPTION\n' +
    esc(
      'oxyctl manages tunnels, virtual networks, private IP routes and public hostnames in a local store, runs the ' +
        'edge and the tunnel connector, and connects devices to private networks. Commands, flags and outputs follow cloudflared.',
    ) +
    '\n';
  out += '.SH COMMANDS\n';
  for (const id of ids) out += `.TP\n.B oxyctl ${words(id).join(' ')}\n${esc(commands[id].summary ?? '')}\n`;
  out +=
    '.SH ENVIRONMENT\n.TP\n.B OXY_HOME\n' +
    esc('Data directory holding oxy.db and tunnel credentials files; default ~/.oxyctl. The --home flag overrides it.') +
    '\n.TP\n.B NO_COLOR\n' +
    esc('Disables colour on a terminal.') +
    '\n';
  out += `.SH SEE ALSO\n${ids.map((id) => `.BR ${esc(pageName(id))} (1)`).join(',\n')}\n`;
  return out;
}

const ids = Object.keys(commands).sort();
const pages = new Map([['oxyctl.1', mainPage(ids)], ...ids.map((id) => [`${pageName(id)}.1`, commandPage(commands[id])])]);

if (check) {
  const existing = existsSync(manDir) ? readdirSync(manDir).filter((f) => f.endsWith('.1')) : [];
  const stale = [...pages].filter(([file, text]) => !existsSync(join(manDir, file)) || readFileSync(join(manDir, file), 'utf8') !== text).map(([f]) => f);
  const extra = existing.filter((f) => !pages.has(f));
  if (stale.length || extra.length) {
    console.error(`man pages are stale (run \`npm run man\`): ${[...stale, ...extra].join(', ')}`);
    process.exit(1);
  }
  console.log(`man pages up to date (${pages.size})`);
} else {
  mkdirSync(manDir, { recursive: true });
  for (const f of readdirSync(manDir)) if (f.endsWith('.1') && !pages.has(f)) rmSync(join(manDir, f));
  for (const [file, text] of pages) writeFileSync(join(manDir, file), text);
  console.log(`wrote ${pages.size} man pages to ${manDir}`);
}
