import { ConfigError } from '../config';
import { createLogger } from '../log';
import { LocalServices, MissingProgramError, SandboxDatabaseError, startLocalServices } from './local-services';
import { isLoopbackAddress, Sandbox, SandboxConfigError, sandboxEnvProblems, sandboxSettings, startSandbox } from './sandbox';

const USAGE = `usage: npm run sandbox [-- --provider ycloud|meta|meta-sip] [--listen ADDRESS]
the bridge against a simulated YCloud (or Meta), with a browser phone at /sandbox and a demo agent as the PBX
(docs/sandbox.md). Postgres from DATABASE_URL (default postgres://bridge:localdev@127.0.0.1:5432/wasb_sandbox, scripts/setup.sh's role);
rtpengine and drachtio-server are started from PATH unless RTPENGINE_NG / DRACHTIO_HOST name running ones.
  --provider  what the simulator plays (WA_PROVIDER; default ycloud)
  --listen    serve the page and the browser's media on ADDRESS, one of this machine's IP addresses, e.g. a
              LAN address to open the sandbox from another machine (SANDBOX_HOST; default 127.0.0.1)`;

/** The value after `flag` on the command line: undefined without the flag, '' when it has none. */
function option(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i < 0 ? undefined : argv[i + 1] ?? '';
}

/** How long stopping may take before the process exits anyway. */
const STOP_BOUND_MS = 20_000;

/**
 * `npm run sandbox`: the bridge, a simulated YCloud, the browser phone and (with no PBX_TARGET) the demo
 * agent, plus rtpengine and drachtio-server started from PATH when not given. Never with a real key.
 */
async function main(): Promise<void> {
  const env = process.env;
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return;
  }
  const unknown = argv.filter((a, i) => a.startsWith('-') && a !== '--provider' && a !== '--listen' && !['--provider', '--listen'].includes(argv[i - 1] ?? ''));
  if (unknown.length) {
    console.error(`unknown option ${unknown[0]}\n${USAGE}`);
    process.exit(2);
  }
  // `--provider meta`: the simulator speaks Meta's Graph API and the bridge runs with WA_PROVIDER=meta;
  // `--provider meta-sip`: the same with the number in Meta's SIP mode and a simulated Meta SIP gateway.
  const provider = option(argv, '--provider');
  if (provider !== undefined) env.WA_PROVIDER = provider;
  const listen = option(argv, '--listen');
  if (listen !== undefined) env.SANDBOX_HOST = listen;
  const refused = sandboxEnvProblems(env);
  if (listen === '') refused.push('--listen needs an address (one of this machine\'s IP addresses)');
  if (env.WA_PROVIDER?.trim() === 'meta-sip' && env.DRACHTIO_HOST?.trim()) {
    refused.push("--provider meta-sip gives the sandbox's own drachtio-server a TLS contact for Meta's side: unset DRACHTIO_HOST (docker compose's sandbox profile runs only ycloud and meta)");
  }
  if (refused.length) {
    console.error(`wa-sip-bridge sandbox refuses to start:\n${refused.map((p) => `  - ${p}`).join('\n')}`);
    process.exit(2);
  }
  const log = createLogger(env.LOG_LEVEL?.trim() || 'info', { node: 'sandbox' });
  let services: LocalServices | null = null;
  let sandbox: Sandbox | null = null;
  let stopping = false;
  const stop = (code: number) => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(code || 1), STOP_BOUND_MS).unref();
    void (async () => {
      await sandbox?.stop().catch((err: unknown) => log.warn({ err }, 'sandbox stop failed'));
      await services?.stop();
      process.exit(code);
    })();
  };
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));
  try {
    services = await startLocalServices(env, log);
    sandbox = await startSandbox({ ...env, ...services.env }, log, { metaSipContact: services.metaSipContact ?? undefined });
  } catch (err) {
    const known = err instanceof SandboxConfigError || err instanceof ConfigError || err instanceof MissingProgramError || err instanceof SandboxDatabaseError;
    const problems = err instanceof SandboxConfigError || err instanceof ConfigError ? err.problems : [(err as Error).message];
    console.error(`wa-sip-bridge sandbox cannot start:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    await services?.stop();
    process.exit(known ? 2 : 1);
  }
  const s = sandboxSettings(env);
  const httpHost = sandbox.bridge.config.httpHost ?? '';
  if (!(isLoopbackAddress(httpHost) || httpHost === 'localhost')) {
    log.warn({ host: httpHost || '*' }, `the sandbox page has no login: anyone who reaches ${httpHost || 'this machine'} can place calls into your PBX; use --listen only on a network you trust`);
  }
  // Without a SIP address (a drachtio-server of your own), say where to look: its admin port is not one.
  const sip = services.sipUri ?? `<its SIP address> (your drachtio-server, admin port ${env.DRACHTIO_HOST}:${env.DRACHTIO_PORT ?? 9022})`;
  console.log([
    '',
    '  wa-sip-bridge sandbox is ready',
    `  Browser phone:   ${sandbox.url}   (the WhatsApp user ${s.userNumber})`,
    ...(isLoopbackAddress(s.host) ? [] : [
      `                   from another machine: browsers allow the microphone on plain http only for localhost, so allow`,
      `                   ${sandbox.url.replace(/\/sandbox$/, '')} as secure there (Chrome: chrome://flags/#unsafely-treat-insecure-origin-as-secure)`,
    ]),
    `  Business:        ${s.businessName} ${s.businessNumber} (simulated ${sandbox.sim.face === 'meta' ? 'Meta Cloud API' : 'YCloud'})`,
    `  Calls go to:     ${sandbox.demo ? `the built-in demo agent (${sandbox.demo.uri}); set PBX_TARGET for your PBX` : env.PBX_TARGET}`,
    `  Agents call in:  INVITE sip:${s.userNumber}@${sip.replace(/^sip:/, '')} from ${env.SIP_TRUSTED_SOURCES?.trim() || '127.0.0.1'}`,
    ...metaSipBanner(sandbox),
    '  Stop with Ctrl-C.',
    '',
  ].join('\n'));
}

/** `--provider meta-sip`: where Meta's side and the bridge talk SIP, and how to watch it. */
function metaSipBanner(sandbox: Sandbox): string[] {
  const m = sandbox.metaSip;
  if (!m) return [];
  const { bridgeContact: b, gateway: g } = m;
  return [
    `  Meta SIP:        the number is in Meta's SIP mode (${m.srtp === 'dtls' ? 'DTLS-SRTP' : 'SDES-SRTP'}): Meta's simulated gateway sends its INVITEs over TLS`,
    `                   to sips:${b.tls.hostname}:${b.port}, the bridge's drachtio-server at ${b.host}:${b.port} (its certificate names ${b.tls.hostname},`,
    `                   from a CA made for this run, ${b.tls.caFile}, which the simulator trusts and checks as Meta does);`,
    `                   the bridge sends its INVITEs to wa.meta.vc through sip:${g.tlsContact.host}:${g.tlsContact.port};transport=tls (the simulator).`,
    '                   To see it work: call the business from the page (or dial the user from the PBX) and watch the',
    "                   timeline's \"Meta SIP\" lines: Meta's INVITE, the bridge's 200 OK, the business's first packet, the BYE.",
  ];
}

main().catch((err: unknown) => {
  console.error(`wa-sip-bridge sandbox failed: ${(err as Error).message}`);
  process.exit(1);
});
