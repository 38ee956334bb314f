import net from 'node:net';
import Srf from 'drachtio-srf';

/*
 * What drachtio-srf (5.0.x) keeps of its connection to drachtio-server, read where its API says
 * nothing. Srf#request() sends on the first socket of the agent's map (drachtio-agent.js
 * _getDefaultSocket), and with an empty map it throws an AssertionError from a debug line
 * (`sockPort(undefined)`) instead of reporting that it has no connection; its 'connect' and 'close'
 * events reach the application through setImmediate hops of different lengths (two for 'connect',
 * drachtio-agent.js and srf.js; one for 'close'), so they alone do not tell whether it can send now.
 */

interface AgentInternals {
  /** Each connection to drachtio-server, in the order made; `authenticated` once it accepted the secret. */
  mapServer: Map<net.Socket, { authenticated?: boolean }>;
  wp?: WireInternals;
}

interface WireInternals {
  /** Set by disconnect(): no reconnection once a socket closes. */
  closing?: boolean;
  /** The socket of the last reconnection attempt. */
  socket?: net.Socket;
  reconnectVars?: { retryTimer?: NodeJS.Timeout | null };
}

function agentOf(srf: Srf): AgentInternals | null {
  const client = (srf as unknown as { _app?: { client?: AgentInternals } })._app?.client;
  return client?.mapServer instanceof Map ? client : null;
}

/** Whether Srf#request() has a connection to send on now: the socket it would pick is open and authenticated. */
export function srfCanSend(srf: Srf): boolean {
  const first = agentOf(srf)?.mapServer.entries().next().value;
  return first !== undefined && first[1].authenticated === true && !first[0].destroyed;
}

/**
 * Disconnects for good, connected or not. Srf#disconnect() alone does not, while drachtio-server is
 * away: it looks up its default socket first, which throws on an empty map before it can set
 * `closing`, so the reconnection loop goes on for ever (and a retry already scheduled runs even after
 * `closing`: it does not check it) and a stopped bridge connects again to whatever drachtio-server
 * comes up on that port, taking its INVITEs.
 */
export function srfStop(srf: Srf): void {
  const agent = agentOf(srf);
  if (!agent) return; // connect() was never called: nothing to stop
  const wp = agent.wp;
  if (wp) {
    wp.closing = true;
    if (wp.reconnectVars?.retryTimer) clearTimeout(wp.reconnectVars.retryTimer);
    if (wp.reconnectVars) wp.reconnectVars.retryTimer = null;
    // A reconnection attempt under way (not in the map until it connects).
    if (wp.socket && !agent.mapServer.has(wp.socket)) wp.socket.destroy();
  }
  for (const socket of [...agent.mapServer.keys()]) socket.end();
}
