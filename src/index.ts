import { Bridge } from './app';
import { DatabaseSetupError } from './cdr/db-problems';
import { Config, ConfigError, loadConfig } from './config';
import { applyEnvFile, EnvFileError } from './config/env-file';
import { configSecrets, createLogger } from './log';
import { NumbersFileError } from './numbers';

const USAGE = `usage: npm start   (node dist/src/index.js)
runs the bridge with the settings in its environment (README.md's settings tables, .env.example); it stops
at once, exit 2, listing every setting to fix. SIGTERM drains the calls in progress, SIGHUP rereads NUMBERS_FILE.`;

async function main(): Promise<void> {
  if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
    console.log(USAGE);
    return;
  }
  let config: Config;
  let envFile: ReturnType<typeof applyEnvFile> = null;
  try {
    // ENV_FILE / --env-file: settings from a file, under those of the environment (systemd's EnvironmentFile
    // would do, but could not read .env.example's quoting; docs/deploy-native.md).
    envFile = applyEnvFile(process.argv.slice(2));
    config = loadConfig();
  } catch (err) {
    if (err instanceof EnvFileError) {
      console.error(`wa-sip-bridge cannot start, fix the settings file ${err.file}:\n${err.problems.map((p) => `  - ${p}`).join('\n')}`);
      process.exit(2);
    }
    if (err instanceof ConfigError) {
      console.error(`wa-sip-bridge cannot start, fix these settings:\n${err.problems.map((p) => `  - ${p}`).join('\n')}`);
      process.exit(2);
    }
    throw err;
  }
  // Besides pino's redaction, every configured secret value is scrubbed from every line as written, and
  // phone numbers are masked unless LOG_PHONE_NUMBERS=full.
  // NUMBERS_FILE's credentials are known once the bridge has read it (and change at a reload).
  let bridge: Bridge | null = null;
  const log = createLogger(config.logLevel, { node: config.nodeId }, {
    secrets: configSecrets(config), moreSecrets: () => bridge?.numbers.secrets() ?? [], phoneNumbers: config.logPhoneNumbers,
  });
  // The keys only: the file holds secrets.
  if (envFile) log.info({ file: envFile.file, settings: envFile.set.length, keptFromEnvironment: envFile.fromEnvironment }, 'settings file read');
  try {
    bridge = new Bridge(config, log);
  } catch (err) {
    if (err instanceof NumbersFileError) {
      console.error(`wa-sip-bridge cannot start, fix NUMBERS_FILE (${err.file}):\n${err.problems.map((p) => `  - ${p}`).join('\n')}`);
      process.exit(2);
    }
    throw err;
  }
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  let signals = 0;
  const stop = (sig: string) => {
    signals++;
    if (signals > 1) {
      // A second signal: no more waiting for calls to end by themselves.
      log.warn({ sig }, 'second signal: ending calls now');
      void bridge.stop().then(() => process.exit(0), () => process.exit(1));
      return;
    }
    const { drainMs } = config.shutdown;
    // Whatever hangs, the process exits: the drain, then every stop step's own bound, then this.
    const deadline = drainMs + bridge.stopBoundMs + 5000;
    setTimeout(() => {
      log.error({ afterMs: deadline }, 'shutdown did not finish in time: exiting anyway');
      process.exit(1);
    }, deadline).unref();
    log.info({ sig, drainMs, active: bridge.calls.active }, 'stopping: refusing new calls, letting calls in progress finish');
    bridge.drain()
      .then(() => bridge.stop())
      .then(() => process.exit(0), (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // SIGHUP: the numbers file again (a bad file changes nothing; its problems are logged).
  process.on('SIGHUP', () => {
    const r = bridge.reloadNumbers();
    if (r.ok) log.info({ numbers: r.numbers }, 'numbers reloaded (SIGHUP)');
    else log.error({ problems: r.problems }, 'numbers file refused on SIGHUP: the numbers in use are kept');
  });
  await bridge.start();
}

main().catch((err: unknown) => {
  // 2: something to fix before a restart can help (systemd's RestartPreventExitStatus=2 keeps it down).
  if (err instanceof DatabaseSetupError) {
    console.error(`wa-sip-bridge cannot start: ${err.message}`);
    process.exit(2);
  }
  console.error(`wa-sip-bridge failed to start: ${(err as Error).message}`);
  process.exit(1);
});
