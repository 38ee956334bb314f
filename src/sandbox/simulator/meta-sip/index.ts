/** Meta's native SIP gateway, simulated: see sim.ts. */
export { MetaSipSim, META_USER_AGENT } from './sim';
export type { MetaSipSimEvents } from './sim';
export { MetaSipCall } from './call';
export type { MetaSipCallEvents } from './call';
export { META_REALM } from './digest';
export { metaShapeProblems, businessOfferProblem, audioCodecs, rtpTarget } from './sdp-shapes';
export { checkBridgeCertificate } from './tls-check';
export { countryCodeOf, newWacid } from './ids';
export { startMetaSipSim } from './local';
export type { StartMetaSipSimOptions, LocalMetaSipSim } from './local';
export type * from './types';
