import { Config } from '../config';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { Numbers, NumbersOptions } from './directory';
import { envNumbers, numberDefaults } from './env-numbers';
import { loadNumbersFile } from './numbers-file';

export { Numbers } from './directory';
export type { NumbersOptions, NumberSummary, ReloadOutcome, SipModeSummary } from './directory';
export { NumbersFileError } from './numbers-file';

type Env = Record<string, string | undefined>;

/**
 * The bridge's business numbers: NUMBERS_FILE's when it is set (secrets resolved from `env` and the files
 * named), else the environment's one number. Throws NumbersFileError, listing every problem, when the
 * file is refused: start-up stops on it as on a ConfigError. `o.sipProvider` makes the adapter of a number
 * in Meta's SIP mode (the bridge passes it; without it, such a number's route carries its Graph adapter).
 */
export function loadNumbers(
  config: Config, metrics: Metrics | undefined, log: Logger, env: Env = process.env, o: Pick<NumbersOptions, 'sipProvider'> = {},
): Numbers {
  const media = { interfaces: config.rtpengine.interfaces, pbxSrtp: config.pbx.srtp };
  const file = config.numbers.file;
  if (file === null) return new Numbers(envNumbers(config), { media, metrics, log, reread: null, sipProvider: o.sipProvider });
  const read = () => loadNumbersFile(file, numberDefaults(config), env);
  return new Numbers(read(), { media, metrics, log, reread: read, sipProvider: o.sipProvider });
}
