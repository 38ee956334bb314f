import { TestStack } from './bridge';
import { infra } from './infra';
import { RtpPhone } from './rtp-phone';
import { SippRun } from './sipp';
import { WaUser } from './wa-user';

/** What one SIP call test puts together: the bridge stack, SIPp as the PBX or agent, the agent's RTP phone, the WhatsApp user. */
export interface CallParts {
  stack: TestStack | null;
  sipp: SippRun | null;
  user: WaUser | null;
  phone: RtpPhone | null;
}

/**
 * For a describe() of SIP call tests: skips them (the run already said why, loudly, once) without
 * drachtio-server, and after each test ends whatever the test started (the stack too, unless
 * `keepStack`: then the caller stops it).
 */
export function callParts(opts: { keepStack?: boolean } = {}): CallParts {
  const parts: CallParts = { stack: null, sipp: null, user: null, phone: null };
  before(function () {
    if (!infra.drachtio) this.skip();
  });
  afterEach(async () => {
    parts.user?.close();
    parts.phone?.stop();
    await parts.sipp?.proc.stop();
    if (!opts.keepStack) await parts.stack?.stop();
    parts.sipp = parts.user = parts.phone = null;
    if (!opts.keepStack) parts.stack = null;
  });
  return parts;
}
