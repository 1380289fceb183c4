import { OxyError } from '../core/errors.js';
import { findConfigFile, loadConfig, parseConfig, type ConnectorConfig, type RawConfig } from '../engine/connector/config.js';

/** The config the `tunnel ingress` commands check, announced as cloudflared does, failures prefixed "Validation failed". */
export function loadIngressConfig(home: string, flags: { config?: string; json?: string }, announce = 'Validating rules from'): ConnectorConfig {
  const validationFailed = (err: unknown): never => {
    if (err instanceof OxyError && err.code === 'OXY_ERR_INGRESS_INVALID') {
      throw new OxyError(err.code, `Validation failed: ${err.message}`, { cause: err });
    }
    throw err;
  };
  if (flags.json !== undefined) {
    process.stdout.write('Validating rules from cmdline flag --json\n');
    let raw: RawConfig;
    try {
      raw = JSON.parse(flags.json) as RawConfig;
    } catch (err) {
      throw new OxyError('OXY_ERR_CONFIG', `--json is not valid JSON: ${(err as Error).message}`);
    }
    try {
      return parseConfig(raw, '--json', { requireIngress: true });
    } catch (err) {
      return validationFailed(err);
    }
  }
  const file = findConfigFile(home, flags.config);
  if (!file) {
    throw new OxyError(
      'OXY_ERR_CONFIG',
      'No configuration file was found. Please create one, or use the --config flag to specify its filepath. ' +
        'You can use the help command to learn more about configuration files',
    );
  }
  process.stdout.write(`${announce} ${file}\n`);
  try {
    return loadConfig(file, { requireIngress: true });
  } catch (err) {
    return validationFailed(err);
  }
}
