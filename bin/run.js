#!/usr/bin/env node
// The bundled CLI (lib/, built by `npm run build`): oclif and the commands in a few files.
import { execute } from '../lib/run.js';

await execute({ dir: import.meta.url });
