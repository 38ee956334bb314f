import { closeRows } from './db-rows';
import { infra, startInfra, stopInfra } from './infra';

export { infra };

/** mocha root hooks: the whole run shares one database, rtpengine and drachtio-server. */
export const mochaHooks = {
  async beforeAll(this: Mocha.Context): Promise<void> {
    this.timeout(60000);
    await startInfra();
    if (infra.drachtioMissing) console.log(`\n!!! SIP TESTS SKIPPED: ${infra.drachtioMissing} !!!\n`);
  },
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(30000);
    await closeRows();
    await stopInfra();
  },
};
