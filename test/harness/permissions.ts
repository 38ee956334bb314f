import { PermissionStore } from '../../src/calls/permissions';
import { DEFAULT_LINE, ProviderSim } from './ycloud-sim';

const BUSINESS = DEFAULT_LINE.number;
const WABA = DEFAULT_LINE.wabaId;

/** The customer has granted `business` permanent permission to call them (as a permission reply would). */
export async function grantPermanentPermission(store: PermissionStore, business: string, customer: string): Promise<void> {
  await store.recordReply({
    businessNumber: business, customerNumber: customer, response: 'accept', isPermanent: true, expiresAt: null,
    responseSource: 'user_action', repliedAt: new Date(), wamid: null, eventId: null,
  });
}

let replySeq = 0;

/**
 * A call_permission_reply webhook from `customer`, in the simulator's provider's envelope: the reply object
 * (response, is_permanent, expiration_timestamp, response_source) is the same for YCloud and Meta, so
 * tests of its meaning build it with any fields; YCloud wraps it in whatsapp.inbound_message.received,
 * Meta in a `messages` change of the WABA (unix-second timestamp, digits-only numbers).
 */
export function permissionReplyEvent(sim: ProviderSim, customer: string, r: Record<string, unknown>, sendTime = new Date()): Record<string, unknown> {
  const id = `wamid.${customer.slice(1)}.${++replySeq}.${Date.now()}`;
  const interactive = { type: 'call_permission_reply', call_permission_reply: r };
  if (sim.face === 'ycloud') {
    return sim.event('whatsapp.inbound_message.received', {
      whatsappInboundMessage: { id: `m-${id}`, wamid: id, wabaId: WABA, from: customer, to: BUSINESS, sendTime: sendTime.toISOString(), type: 'interactive', interactive },
    });
  }
  return {
    object: 'whatsapp_business_account',
    entry: [{
      id: WABA,
      changes: [{
        field: 'messages',
        value: {
          messaging_product: 'whatsapp',
          metadata: { display_phone_number: BUSINESS.slice(1), phone_number_id: DEFAULT_LINE.phoneId },
          contacts: [{ wa_id: customer.slice(1), profile: { name: 'Sim User' } }],
          messages: [{ from: customer.slice(1), id, timestamp: String(Math.floor(sendTime.getTime() / 1000)), type: 'interactive', interactive }],
        },
      }],
    }],
  };
}

