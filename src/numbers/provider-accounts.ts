import { WhatsAppProvider } from '../calls/provider-port';
import { WebhookSource } from '../events/webhook-source';
import { Metrics } from '../metrics/metrics';
import { MetaClient } from '../providers/meta/client';
import { MetaWebhooks } from '../providers/meta/webhook-source';
import { YCloudClient } from '../providers/ycloud/client';
import { YCloudWebhooks } from '../providers/ycloud/webhook-source';
import { AccountSpec } from './spec';

/** A provider account as the bridge uses it: the adapter its numbers' calls go through, and its webhook door. */
export interface ProviderAccount {
  /** Its name: the webhook path, POST (and, for Meta, GET) /webhooks/<name>. */
  name: string;
  /** "ycloud" or "meta", as CDRs and metrics name the provider. */
  kind: AccountSpec['kind'];
  provider: WhatsAppProvider;
  webhooks: WebhookSource;
}

/** The adapter and webhook source of one account (nothing is sent: adapters connect per request). */
export function providerAccount(a: AccountSpec, metrics?: Metrics): ProviderAccount {
  switch (a.kind) {
    case 'ycloud':
      return {
        name: a.name, kind: a.kind,
        provider: new YCloudClient({ baseUrl: a.apiBaseUrl, apiKey: a.apiKey, timeoutMs: a.timeoutMs }, metrics),
        webhooks: new YCloudWebhooks(a.webhookSecret, a.webhookToleranceSeconds, a.name),
      };
    case 'meta':
      return {
        name: a.name, kind: a.kind,
        provider: new MetaClient({ baseUrl: a.apiBaseUrl, accessToken: a.accessToken, authHeader: a.authHeader, timeoutMs: a.timeoutMs }, metrics),
        webhooks: new MetaWebhooks({ name: a.name, appSecret: a.appSecret, verifyToken: a.verifyToken }),
      };
  }
}
