#!/usr/bin/env node
/**
 * The main job on embedded defaults: a quick tunnel — an edge on this machine and a tunnel
 * to the built-in hello-world origin — printing the URL that reaches it. Ctrl-C stops it.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const child = spawn(process.execPath, [bin, 'tunnel', '--hello-world', ...process.argv.slice(2)], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code) => process.exit(code ?? 1));
