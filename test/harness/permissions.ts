import { PermissionStore } from '../../src/calls/permissions';

/** The customer has granted `business` permanent permission to call them (as a permission reply would). */
export async function grantPermanentPermission(store: PermissionStore, business: string, customer: string): Promise<void> {
  await store.recordReply({
    businessNumber: business, customerNumber: customer, response: 'accept', isPermanent: true, expiresAt: null,
    responseSource: 'user_action', repliedAt: new Date(), wamid: null, eventId: null,
  });
}
