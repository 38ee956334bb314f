import fs from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';

/**
 * Preloaded into the bridge process (NODE_OPTIONS=--require) by `npm run load -- --bridge-cpu-prof DIR`:
 * profiles the whole process with V8's sampling profiler and writes DIR/bridge-PID.cpuprofile at exit
 * (node's own --cpu-prof is not allowed in NODE_OPTIONS). Open it in Chrome DevTools, or summarize it
 * with `node dist/test/load/cpu-prof-top.js FILE`.
 */
const dir = process.env.WASB_CPU_PROF_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  // An in-process session answers synchronously, so this works inside an exit handler.
  process.on('exit', () => {
    session.post('Profiler.stop', (err, res) => {
      if (!err) fs.writeFileSync(path.join(dir, `bridge-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
