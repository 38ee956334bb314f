export { MetaSipBorder, MetaSipSettings, CallEventSink, SipNumber } from './border';
export { MetaSipProvider } from './provider';
