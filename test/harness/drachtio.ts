import path from 'node:path';
import { DrachtioServer, findDrachtio } from '../../src/sandbox/local-drachtio';
import { ManagedProcess } from '../../src/sandbox/processes';

export * from '../../src/sandbox/local-drachtio';

/**
 * Starts a stopped drachtio-server again on the same ports with the same configuration, as a restart
 * (a crash and its supervisor, an upgrade) would: it comes back knowing none of the dialogs it had.
 */
export async function relaunchDrachtio(server: DrachtioServer, bin = findDrachtio()): Promise<void> {
  if (!bin) throw new Error('drachtio-server not found');
  if (server.proc.child.exitCode === null && server.proc.child.signalCode === null) throw new Error('drachtio-server is still running: stop it first');
  const proc = new ManagedProcess('drachtio', bin, ['-f', path.join(server.dir, 'drachtio.conf.xml')]);
  await proc.waitFor(/Starting sofia event loop/, 15000).catch(async (err: Error) => {
    await proc.stop();
    throw err;
  });
  server.proc = proc;
}
