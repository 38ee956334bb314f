import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { name: 'wa-sip-bridge', ...base } });
}
