/** Entry of the quick tunnel's connector thread (quick-tunnel.ts starts it; the CLI bundle keeps it as its own file). */
import { runQuickConnector } from './quick-tunnel.js';

await runQuickConnector();
