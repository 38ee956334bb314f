import { z } from 'zod';

/** Webhook payloads from the YCloud reference, validated before anything acts on them. */
const e164 = z.string().regex(/^\+?[1-9]\d{5,15}$/, 'not an E.164 number');

export const callingConnectSchema = z.object({
  id: z.string().optional(),
  wacid: z.string().min(1),
  phoneId: z.string().min(1),
  from: e164,
  to: e164,
  direction: z.enum(['USER_INITIATED', 'BUSINESS_INITIATED']),
  dialTime: z.number().optional(),
  sdpType: z.enum(['offer', 'answer']),
  sdp: z.string().min(1),
});

export const callingStatusSchema = z.object({
  wabaId: z.string().optional(),
  wacid: z.string().min(1),
  status: z.string().min(1),
  recipientPhone: z.string().optional(),
});

export const callingTerminateSchema = z.object({
  id: z.string().optional(),
  wacid: z.string().min(1),
  phoneId: z.string().optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  direction: z.enum(['USER_INITIATED', 'BUSINESS_INITIATED']).optional(),
  startTime: z.number().optional(),
  endTime: z.number().optional(),
  duration: z.number().optional(),
  status: z.string().optional(),
});

const envelope = {
  id: z.string().min(1).max(200),
  apiVersion: z.string().optional(),
  createTime: z.string().optional(),
};

export const webhookEventSchema = z.discriminatedUnion('type', [
  z.object({ ...envelope, type: z.literal('whatsapp.call.connect'), callingConnect: callingConnectSchema }),
  z.object({ ...envelope, type: z.literal('whatsapp.call.status.updated'), callingStatusUpdated: callingStatusSchema }),
  z.object({ ...envelope, type: z.literal('whatsapp.call.terminate'), callingTerminate: callingTerminateSchema }),
  z.object({ ...envelope, type: z.literal('whatsapp.inbound_message.received'), whatsappInboundMessage: z.record(z.unknown()) }),
]);

/** Any other event type is accepted (so YCloud stops retrying) and stored, but not acted on. */
export const unknownEventSchema = z.object({ ...envelope, type: z.string().min(1) });

export type CallingConnect = z.infer<typeof callingConnectSchema>;
export type CallingStatusUpdated = z.infer<typeof callingStatusSchema>;
export type CallingTerminate = z.infer<typeof callingTerminateSchema>;
export type WebhookEvent = z.infer<typeof webhookEventSchema>;
export type AnyWebhookEvent = WebhookEvent | z.infer<typeof unknownEventSchema>;

/** A malformed event names its `type` when it got as far as having one. */
export type ParsedEvent = { ok: true; event: WebhookEvent | null; id: string; type: string } | { ok: false; reason: string; type?: string };

/** Parses a raw body: a known event (validated), an unknown-but-well-formed one (event null), or an error. */
export function parseWebhookEvent(raw: Buffer): ParsedEvent {
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    return { ok: false, reason: 'body is not JSON' };
  }
  const base = unknownEventSchema.safeParse(json);
  if (!base.success) return { ok: false, reason: describe(base.error) };
  const known = webhookEventSchema.safeParse(json);
  if (known.success) return { ok: true, event: known.data, id: known.data.id, type: known.data.type };
  const knownTypes: string[] = ['whatsapp.call.connect', 'whatsapp.call.status.updated', 'whatsapp.call.terminate', 'whatsapp.inbound_message.received'];
  if (knownTypes.includes(base.data.type)) return { ok: false, reason: describe(known.error), type: base.data.type };
  return { ok: true, event: null, id: base.data.id, type: base.data.type };
}

function describe(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** The wacid an event is about, for correlation and storage. */
export function wacidOf(event: WebhookEvent | null): string | null {
  if (!event) return null;
  switch (event.type) {
    case 'whatsapp.call.connect': return event.callingConnect.wacid;
    case 'whatsapp.call.status.updated': return event.callingStatusUpdated.wacid;
    case 'whatsapp.call.terminate': return event.callingTerminate.wacid;
    default: return null;
  }
}
