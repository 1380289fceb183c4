#!/usr/bin/env node
/**
 * Generates docs/hooks.md from the TSDoc of src/engine/hooks/types.ts and the documented
 * order in src/engine/hooks/order.ts.
 *
 *   node scripts/gen-hooks-doc.js          # writes docs/hooks.md
 *   node scripts/gen-hooks-doc.js --check  # exits 1 if docs/hooks.md is stale
 *
 * TypeScript 7's native compiler has no JS compiler API, so this is a small explicit
 * parser over the .ts text. What it understands (and what types.ts must keep to):
 * - a doc comment `/** … *\/` directly above `export interface Name<…> {` or
 *   `export type Name = …;` documents that declaration;
 * - inside an interface, a doc comment directly above a member (`name?(…): R;` or
 *   `name?: T;`, one line) documents the member; tags `@fires`, `@default`, `@returns`
 *   are the hook's reference fields; `{@link X}` renders as `X`;
 * - interfaces named `…Hook` and `Hooks` are hook families; the others are types.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const TYPES = `${ROOT}src/engine/hooks/types.ts`;
export const ORDER = `${ROOT}src/engine/hooks/order.ts`;
export const OUT = `${ROOT}docs/hooks.md`;

/** Strips the comment markers: the text of a doc comment, lines joined. */
function commentText(raw) {
  return raw
    .replace(/^\/\*\*/, '')
    .replace(/\*\/$/, '')
    .split('\n')
    .map((l) => l.replace(/^\s*\* ?/, ''))
    .join('\n')
    .trim();
}

/** Splits a doc comment into its summary and its tags. */
export function parseDoc(raw) {
  const text = commentText(raw).replace(/\{@link (\w+)\}/g, '`$1`');
  const tags = {};
  const [summary, ...rest] = text.split(/\n(?=@\w+)/);
  let body = summary;
  if (summary.startsWith('@')) {
    rest.unshift(summary);
    body = '';
  }
  for (const part of rest) {
    const m = /^@(\w+)\s*([\s\S]*)$/.exec(part);
    if (m) tags[m[1]] = m[2].replace(/\s*\n\s*/g, ' ').trim();
  }
  return { summary: body.trim(), tags };
}

/**
 * Declarations of a .ts text: interfaces (with members) and type aliases, each with its
 * doc comment. A small scanner: doc comment → next declaration line.
 */
export function parseDeclarations(text) {
  const lines = text.split('\n');
  const decls = [];
  let doc;
  let current;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const trimmed = line.trim();
    if (trimmed.startsWith('/**')) {
      let raw = trimmed;
      while (!raw.includes('*/')) raw += `\n${lines[++i].trim()}`;
      doc = raw;
      continue;
    }
    if (!current) {
      const iface = /^export interface (\w+)(<[^>]*>)?(?: extends [^{]+)? \{$/.exec(trimmed);
      if (iface) {
        current = { kind: 'interface', name: iface[1], params: iface[2] ?? '', doc: doc && parseDoc(doc), members: [] };
        decls.push(current);
        doc = undefined;
        if (trimmed.endsWith('{}')) current = undefined;
        continue;
      }
      const alias = /^export type (\w+)(<[^>]*>)? =\s*(.*)$/.exec(trimmed);
      if (alias) {
        let body = alias[3];
        while (!body.trimEnd().endsWith(';')) body += `\n${lines[++i]}`;
        decls.push({ kind: 'type', name: alias[1], params: alias[2] ?? '', doc: doc && parseDoc(doc), body: body.trim().replace(/;$/, '') });
        doc = undefined;
        continue;
      }
      if (trimmed && !trimmed.startsWith('//')) doc = undefined;
      continue;
    }
    if (trimmed === '}') {
      current = undefined;
      doc = undefined;
      continue;
    }
    const member = /^(readonly )?(\w+)(\?)?(\(.*\))?: (.*);$/.exec(trimmed) ?? /^(readonly )?(\w+)(\?)?(\(.*\))?(?:: (.*))?;$/.exec(trimmed);
    if (member) {
      current.members.push({
        name: member[2],
        optional: Boolean(member[3]),
        method: Boolean(member[4]),
        signature: trimmed.replace(/;$/, '').replace(/^readonly /, ''),
        doc: doc && parseDoc(doc),
      });
    }
    doc = undefined;
  }
  return decls;
}

/** The arrays of HOOK_ORDER in order.ts, by on-ramp. */
export function parseOrder(text) {
  const body = /HOOK_ORDER[^=]*=\s*\{([\s\S]*?)\n\};/.exec(text)?.[1];
  if (!body) throw new Error('order.ts: HOOK_ORDER not found');
  const order = {};
  for (const m of body.matchAll(/'([\w-]+)':\s*\[([\s\S]*?)\]/g)) order[m[1]] = [...m[2].matchAll(/'([\w.]+)'/g)].map((x) => x[1]);
  return order;
}

const FAMILY_KEYS = {
  IngressHook: 'ingress',
  IpFlowHook: 'ipFlow',
  ProxyProtocolHook: 'proxyProtocol',
  TunnelHook: 'tunnel',
  HttpRequestHook: 'http',
  EgressHook: 'egress',
  AppLifecycleHook: 'lifecycle',
};

const cell = (s) => (s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The whole document from the two source texts. */
export function renderHooksDoc(typesText, orderText) {
  const decls = parseDeclarations(typesText);
  const order = parseOrder(orderText);
  const byName = new Map(decls.map((d) => [d.name, d]));
  const out = [];
  out.push('# Hook reference');
  out.push('');
  out.push('<!-- Generated by scripts/gen-hooks-doc.js from src/engine/hooks/types.ts and order.ts. Do not edit by hand. -->');
  out.push('');
  out.push('A hooks module is an ES module loaded with `oxyctl edge run --hooks ./my-app.js`. It exports');
  out.push('`start(settings, parentState)`, which returns the hooks it implements; every hook left out has the');
  out.push('default below, and with no hooks at all the edge proxies as configured. `--trace-hooks` logs the');
  out.push('hooks each connection fired, in order (`Hook trace connection=… hooks=a>b>c`).');
  out.push('');
  out.push('```js');
  out.push('export async function start(settings, parentState) {');
  out.push('  return {');
  out.push('    newCtx: () => ({ canAccessPrivateCidrs: false }),           // ctx.ext of every hook of the connection');
  out.push('    http: { handleProxyConnectRequest(head, ctx) { /* read head.headers, set ctx.ext.… */ } },');
  out.push("    egress: { handleConnection(target, ctx) { return { action: 'block' }; } },");
  out.push('  };');
  out.push('}');
  out.push('```');
  out.push('');
  out.push('Hooks may return a value or a promise; a hook that throws (or rejects) fails only its own');
  out.push('connection, and the log line names it (`Hook failed; closing its connection hook=egress.handleConnection`).');
  out.push('');
  out.push('## Order');
  out.push('');
  out.push('Only implemented hooks fire; a connection fires them in this order (tests assert it):');
  out.push('');
  for (const [onramp, names] of Object.entries(order)) {
    out.push(`- **${onramp}**: ${names.map((n) => `\`${n}\``).join(' → ')}`);
  }
  out.push('');
  const hooks = byName.get('Hooks');
  out.push('## Families');
  out.push('');
  if (hooks?.doc) out.push(hooks.doc.summary, '');
  out.push('| Member | Family |');
  out.push('|---|---|');
  for (const m of hooks?.members ?? []) {
    const type = /:\s*(\w+)/.exec(m.signature.replace(/^[^:(]*\(\)/, ''))?.[1] ?? '';
    out.push(`| \`${m.name}\` | ${m.method ? 'per-connection context factory' : `\`${type}\``} |`);
  }
  out.push('');
  const sections = [['Hooks', 'newCtx'], ...Object.entries(FAMILY_KEYS)];
  for (const [iface, key] of sections) {
    const d = byName.get(iface);
    if (!d) throw new Error(`types.ts: interface ${iface} not found`);
    const methods = d.members.filter((m) => m.method);
    if (!methods.length) continue;
    out.push(iface === 'Hooks' ? '### Context: `newCtx`' : `### \`${key}\` — ${iface}`);
    out.push('');
    if (d.doc && iface !== 'Hooks') out.push(d.doc.summary, '');
    for (const m of methods) {
      const name = iface === 'Hooks' ? m.name : `${key}.${m.name}`;
      if (!m.doc) throw new Error(`types.ts: ${name} has no doc comment`);
      for (const tag of ['fires', 'default', 'returns']) if (!m.doc.tags[tag]) throw new Error(`types.ts: ${name} has no @${tag}`);
      out.push(`#### \`${name}\``);
      out.push('');
      out.push('```ts');
      out.push(m.signature.replace(/\?\(/, '('));
      out.push('```');
      out.push('');
      out.push(m.doc.summary);
      out.push('');
      out.push('| | |');
      out.push('|---|---|');
      out.push(`| Fires | ${cell(m.doc.tags.fires)} |`);
      out.push(`| Default | ${cell(m.doc.tags.default)} |`);
      out.push(`| Returns | ${cell(m.doc.tags.returns)} |`);
      out.push('');
    }
  }
  out.push('## Types');
  out.push('');
  const families = new Set(['Hooks', ...Object.keys(FAMILY_KEYS)]);
  for (const d of decls) {
    if (families.has(d.name)) continue;
    out.push(`### \`${d.name}\``);
    out.push('');
    if (d.doc?.summary) out.push(d.doc.summary, '');
    out.push('```ts');
    if (d.kind === 'type') out.push(`type ${d.name}${d.params} = ${d.body};`);
    else {
      out.push(`interface ${d.name}${d.params} {`);
      for (const m of d.members) out.push(`  ${m.signature};${m.doc?.summary ? ` // ${m.doc.summary.replace(/\s*\n\s*/g, ' ')}` : ''}`);
      out.push('}');
    }
    out.push('```');
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

function main() {
  const text = renderHooksDoc(readFileSync(TYPES, 'utf8'), readFileSync(ORDER, 'utf8'));
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(OUT, 'utf8');
    } catch {
      // missing counts as stale
    }
    if (current !== text) {
      console.error('docs/hooks.md is stale: run node scripts/gen-hooks-doc.js');
      process.exit(1);
    }
    return;
  }
  writeFileSync(OUT, text);
  console.log(`wrote ${OUT}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
