import { Bridge } from './app';
import { ConfigError, loadConfig } from './config';
import { createLogger } from './log';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`wa-sip-bridge cannot start, fix these settings:\n${err.problems.map((p) => `  - ${p}`).join('\n')}`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel, { node: config.nodeId });
  const bridge = new Bridge(config, log);
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  await bridge.start();
  const stop = (sig: string) => {
    log.info({ sig }, 'stopping: ending calls in progress');
    bridge.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  console.error(`wa-sip-bridge failed to start: ${(err as Error).message}`);
  process.exit(1);
});
