import { CdrWrites } from './store';

/**
 * A call's CDR writes held until `keep` settles: then made in order if it is true, all dropped if not
 * (a connect set up in parallel with its admission that turned out to be a duplicate leaves no row).
 */
export function gatedWrites(store: CdrWrites, keep: Promise<boolean>): CdrWrites {
  const ok = keep.catch(() => false);
  return {
    createCall: async (...a) => { if (await ok) await store.createCall(...a); },
    updateCall: async (...a) => { if (await ok) await store.updateCall(...a); },
    addEvent: async (...a) => { if (await ok) await store.addEvent(...a); },
  };
}
