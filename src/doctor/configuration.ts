import { Config, ConfigError, loadConfig } from '../config';
import { createLogger } from '../log';
import { loadNumbers, NumbersFileError } from '../numbers';
import { envNumbers, numberDefaults } from '../numbers/env-numbers';
import { loadNumbersFile } from '../numbers/numbers-file';
import { NumbersSpec } from '../numbers/spec';

type Env = Record<string, string | undefined>;

/** The bridge's configuration as the doctor checks it: the settings, and the numbers and accounts as read. */
export interface DoctorConfig {
  config: Config;
  /** The accounts (kind, credentials, API) and numbers (ids, PBX targets) as NUMBERS_FILE or the environment gives them. */
  numbers: NumbersSpec;
  /**
   * ALLOW_PRIVATE_PUBLIC_IP as set. A private PUBLIC_IP without it stops the bridge at start-up; the
   * doctor reads the rest of the configuration anyway (as if it were set) so that this is one finding
   * among the others, reported by the PUBLIC_IP check.
   */
  allowPrivatePublicIp: boolean;
}

/** The configuration, or every problem that stops the bridge from reading it (the other checks need it). */
export type LoadedConfig = { ok: true; value: DoctorConfig } | { ok: false; problems: string[] };

/** What loadConfig says of a private PUBLIC_IP without ALLOW_PRIVATE_PUBLIC_IP (settings.ts CROSS_CHECKS). */
const PRIVATE_PUBLIC_IP = /^PUBLIC_IP is \S+, which WhatsApp cannot reach/;

/** Reads the settings and numbers as the bridge does at start-up (loadConfig, loadNumbers), with `env`'s secrets. */
export function loadDoctorConfig(env: Env): LoadedConfig {
  let config: Config;
  let allowPrivatePublicIp = true;
  try {
    // Read without a problem: PUBLIC_IP is public, or ALLOW_PRIVATE_PUBLIC_IP is set.
    config = loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    if (!err.problems.every((p) => PRIVATE_PUBLIC_IP.test(p))) return { ok: false, problems: err.problems };
    config = loadConfig({ ...env, ALLOW_PRIVATE_PUBLIC_IP: 'true' });
    allowPrivatePublicIp = false;
  }
  try {
    // As the bridge builds its directory (the checks it makes across numbers and accounts)...
    loadNumbers(config, undefined, createLogger('silent'), env);
    // ...and the accounts and numbers as read, which the checks go through one by one.
    const numbers = config.numbers.file === null ? envNumbers(config) : loadNumbersFile(config.numbers.file, numberDefaults(config), env);
    return { ok: true, value: { config, numbers, allowPrivatePublicIp } };
  } catch (err) {
    if (err instanceof NumbersFileError) return { ok: false, problems: err.message.split('\n').filter(Boolean) };
    return { ok: false, problems: [(err as Error).message] };
  }
}

