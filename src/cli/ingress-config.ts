import { OxyError } from '../core/errors.js';
import { findConfigFile, readRawConfig, type RawConfig } from '../engine/connector/config.js';
import { URL_WITH_INGRESS } from '../engine/connector/run.js';
import { applyRawConfig, cloudflaredNotice, type AppliedConfig } from './config-file.js';
import { configFileFlags } from './tunnel-run-flags.js';

/**
 * The config the `tunnel ingress` commands check, announced as cloudflared does, failures
 * prefixed "Validation failed". Its top-level keys are sorted as `tunnel run` would read them
 * (flags, no-effect, unknown); a `url` (flag, $TUNNEL_URL or key) with rules is refused.
 */
export async function loadIngressConfig(
  home: string,
  flags: { config?: string; json?: string; url?: string },
  announce = 'Validating rules from',
): Promise<AppliedConfig & { config: NonNullable<AppliedConfig['config']> }> {
  const validationFailed = (err: unknown): never => {
    if (err instanceof OxyError && err.code === 'OXY_ERR_INGRESS_INVALID') {
      throw new OxyError(err.code, `Validation failed: ${err.message}`, { cause: err });
    }
    throw err;
  };
  let raw: RawConfig;
  let source: string;
  if (flags.json !== undefined) {
    process.stdout.write('Validating rules from cmdline flag --json\n');
    try {
      raw = JSON.parse(flags.json) as RawConfig;
    } catch (err) {
      throw new OxyError('OXY_ERR_CONFIG', `--json is not valid JSON: ${(err as Error).message}`);
    }
    source = '--json';
  } else {
    const file = findConfigFile(home, flags.config, (p) => process.stderr.write(`${cloudflaredNotice(p)}\n`));
    if (!file) {
      throw new OxyError(
        'OXY_ERR_CONFIG',
        'No configuration file was found. Please create one, or use the --config flag to specify its filepath. ' +
          'You can use the help command to learn more about configuration files',
      );
    }
    process.stdout.write(`${announce} ${file}\n`);
    raw = readRawConfig(file);
    source = file;
  }
  const values: Record<string, unknown> = {};
  let applied: AppliedConfig;
  try {
    applied = await applyRawConfig(raw, source, { flagDefs: configFileFlags, flags: values, explicitFlags: new Set(), requireIngress: true });
  } catch (err) {
    return validationFailed(err);
  }
  if (flags.url !== undefined || values.url !== undefined) throw new OxyError('OXY_ERR_INGRESS_INVALID', URL_WITH_INGRESS);
  return applied as AppliedConfig & { config: NonNullable<AppliedConfig['config']> };
}
