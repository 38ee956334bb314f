import { CallMediaAvailable } from './call-events';
import { BusinessLine, WhatsAppProvider } from './provider-port';

/** Brings a file the provider made of a call (recording, transcript, voicemail) into the bridge's store; never throws. */
export interface MediaSink {
  /** `from`: the provider account the notice came from, its adapter, and the number as that provider names it. */
  fetch(media: CallMediaAvailable, from: { account: string; provider: WhatsAppProvider; line: BusinessLine }): Promise<void>;
}

/** An account notice as kept (once per webhook event). */
export interface AccountNoticeRow {
  eventId: string;
  provider: string;
  phoneId: string | null;
  field: string;
  event: string;
  severity: 'restriction' | 'warning' | 'info';
  detail: unknown;
}

/** Where account notices are kept: the admin API shows the latest per number. */
export interface AccountNoticeSink {
  /** False when this event was kept before (a redelivery acted on again, e.g. replayed after a restart). */
  add(n: AccountNoticeRow): Promise<boolean>;
}
