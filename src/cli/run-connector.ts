import type { Logger } from '../engine/observe/log.js';
import { exitOnCrash } from './crash.js';
import { startConnector } from '../engine/connector/start.js';
import { OxyError } from '../core/errors.js';
import { shutdownSignal } from './signals.js';

/** Runs until SIGINT/SIGTERM (graceful stop) or a fatal error such as a refused secret. */
export async function runConnectorUntilSignal(log: Logger, o: Parameters<typeof startConnector>[1]): Promise<void> {
  exitOnCrash(log);
  const signalled = shutdownSignal();
  const started = await startConnector(log, o);
  const fatal = new Promise<Error>((resolve) => started.connector.once('fatal', resolve));
  const outcome = await Promise.race([signalled, fatal]);
  if (outcome instanceof Error) {
    await started.stop(0);
    if (outcome instanceof OxyError && outcome.code === 'OXY_ERR_TUNNEL_UNREACHABLE') throw outcome;
    throw new OxyError('OXY_ERR_TUNNEL_UNAUTHORIZED', `Tunnel could not register: ${outcome.message}`);
  }
  log.info({ signal: outcome, gracePeriod: `${o.options.gracePeriodMs / 1000}s` }, 'Initiating graceful shutdown due to signal');
  await started.stop(o.options.gracePeriodMs);
}
