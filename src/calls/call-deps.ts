import Srf from 'drachtio-srf';
import { Config } from '../config';
import { CdrStore } from '../cdr/store';
import { Logger } from '../log';
import { MediaPlan } from '../media/profiles';
import { RtpEngine } from '../media/rtpengine';
import { Marks } from '../metrics/marks';
import { Metrics } from '../metrics/metrics';
import { Recorder } from '../recording/recorder';
import { SipPolicy } from '../sip/sip-policy';
import { PermissionStore } from './permissions';
import { NumberDirectory } from './numbers-port';

/** What every call needs from the bridge, either direction: one object, made once per bridge. */
export interface CallDeps {
  config: Pick<Config, 'pbx' | 'nodeId' | 'media' | 'publicIp' | 'recording' | 'database' | 'outbound'>;
  /** The business numbers: each one's provider (pre-accept, accept, connect, ...) and PBX route. */
  numbers: NumberDirectory;
  /** Records calls from their acceptance (RECORDING=all); null: calls are not recorded. */
  recorder: Recorder | null;
  rtp: RtpEngine;
  /** The ng parameters of a call no number's route names (interfaces, transport, the bridge's PBX codecs). */
  plan: MediaPlan;
  srf: Srf;
  cdr: CdrStore;
  log: Logger;
  marks: Marks;
  metrics: Metrics;
  /** Who may act in the PBX dialogs, and where a REFER may send the bridge's INVITE. */
  sipPolicy: SipPolicy;
  permissions: PermissionStore;
  /** False while drachtio-server is unreachable: new calls are refused rather than left hanging. */
  canDial: () => boolean;
  /** A route's PBX targets in the order to try them now (targets that fail OPTIONS pings go last). */
  orderTargets: (targets: string[]) => string[];
}
