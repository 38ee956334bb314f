export { MetaSipBorder, MetaSipBorderSettings, CallEventSink, SipNumber } from './border';
export { MetaSipProvider } from './provider';
