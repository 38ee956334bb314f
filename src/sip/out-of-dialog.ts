import Srf from 'drachtio-srf';
import { withTimeout } from './dialog-requests';

/**
 * A dialog's identifiers: enough to send a request in it without drachtio-srf's copy of the dialog.
 * `route`: the dialog's route set (RFC 3261 12.1), each entry a URI as Record-Route gave it, in the
 * order a request in the dialog visits them; empty when no proxy asked to stay on the path.
 */
export interface DialogIds { callId: string; uri: string; from: string; to: string; route: string[] }

interface SipHeaders { get(name: string): string | undefined; getParsedHeader(name: string): { uri?: string } | undefined }

interface DialogInternals {
  type?: string;
  /** The INVITE (received when the bridge is the UAS, sent when it is the UAC) ... */
  req: SipHeaders & { uri: string };
  /** ... and the 2xx to it (sent by the bridge as UAS, received as UAC). */
  res?: SipHeaders;
  sip: { callId: string; localTag: string; remoteTag: string };
  remote: { uri: string };
}

/** What a request in this dialog needs, from either side of it (the bridge as UAC or as UAS). */
export function dialogIds(dialog: Srf.Dialog): DialogIds | null {
  const d = dialog as unknown as DialogInternals;
  try {
    const from = d.req.getParsedHeader('From')?.uri;
    const to = d.req.getParsedHeader('To')?.uri ?? d.req.uri;
    const uas = d.type === 'uas';
    const [local, remote] = uas ? [to, from] : [from, to];
    if (!local || !remote || !d.sip.callId) return null;
    return {
      callId: d.sip.callId,
      uri: d.remote.uri,
      from: `<${local}>;tag=${d.sip.localTag}`,
      to: `<${remote}>;tag=${d.sip.remoteTag}`,
      // RFC 3261 12.1.1: the UAS takes the INVITE's Record-Route as it is; 12.1.2: the UAC takes the
      // 2xx's in reverse order.
      route: uas ? recordRoute(d.req.get('Record-Route')) : recordRoute(d.res?.get('Record-Route')).reverse(),
    };
  } catch {
    return null;
  }
}

/**
 * The URIs of a Record-Route header's entries, in order (several header lines arrive joined by commas).
 * Each entry is a name-addr (RFC 3261 20.30): the URI inside <>, with its parameters; a comma inside a
 * quoted display name or inside <> does not separate entries; header parameters after > are dropped.
 */
export function recordRoute(value: string | undefined): string[] {
  const uris: string[] = [];
  if (!value) return uris;
  let quoted = false;
  let start = -1;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (start >= 0) {
      if (c === '>') {
        const uri = value.slice(start, i).trim();
        if (uri) uris.push(uri);
        start = -1;
      }
    } else if (c === '"') quoted = true;
    else if (c === '<') start = i + 1;
  }
  return uris;
}

/** A request in a dialog, as RFC 3261 12.2.1.1 builds it from the remote target and the route set. */
export interface RoutedRequest {
  /** The Request-URI. */
  uri: string;
  /** The Route header's value (absent for an empty route set). */
  route?: string;
  /** Where it goes first: the first route when that is a loose router (absent: to the Request-URI). */
  nextHop?: string;
}

/**
 * RFC 3261 12.2.1.1: with no route set the request goes to the remote target. When the first route is a
 * loose router (`lr`), the Request-URI is the remote target and the route set goes, in order, into
 * Route, the request going to the first route. A strict router (no `lr`) takes the Request-URI itself:
 * the first route becomes the Request-URI (less what a Request-URI may not carry) and Route holds the
 * rest of the route set followed by the remote target.
 */
export function routeRequest(remoteTarget: string, route: readonly string[]): RoutedRequest {
  const [first, ...rest] = route;
  if (!first) return { uri: remoteTarget };
  const header = (uris: readonly string[]) => uris.map((u) => `<${u}>`).join(', ');
  if (isLooseRouter(first)) return { uri: remoteTarget, route: header(route), nextHop: first };
  return { uri: requestUriOf(first), route: header([...rest, remoteTarget]) };
}

/** Whether a route URI carries the `lr` parameter (RFC 3261 19.1.1), `lr` or `lr=on`. */
function isLooseRouter(uri: string): boolean {
  return /;lr(?:=[^;?]*)?(?:;|\?|$)/i.test(uri.split('?')[0]!);
}

/** A URI as a Request-URI may carry it: no embedded headers, no `method` parameter (RFC 3261 19.1.1, table 1). */
function requestUriOf(uri: string): string {
  return uri.split('?')[0]!.replace(/;method=[^;]*/gi, '');
}

/** drachtio-srf's request() as it behaves (its bundled typings do not match it). */
interface OutOfDialogRequester {
  request(uri: string, opts: { method: string; headers: Record<string, string>; proxy?: string },
    cb: (err: Error | null, req?: { on(ev: 'response', f: (res: { status: number }) => void): void }) => void): void;
}

/** A BYE's CSeq above any the dialog can have used, so the PBX takes it (RFC 3261 12.2.2). */
const LOST_DIALOG_BYE_CSEQ = 2000000000;

/** Ends a dialog drachtio-server does not hold with a BYE; resolves with the PBX's final status. */
export function byeInLostDialog(srf: Srf, ids: DialogIds, timeoutMs: number, headers: Record<string, string> = {}): Promise<number> {
  return requestInLostDialog(srf, ids, 'BYE', LOST_DIALOG_BYE_CSEQ, timeoutMs, headers);
}

/** What srf.request() is given for `method` in a dialog drachtio-server does not hold (its request line, headers, next hop). */
export function lostDialogRequest(ids: DialogIds, method: 'BYE' | 'OPTIONS', cseq: number, headers: Record<string, string> = {}): { uri: string; method: string; headers: Record<string, string>; proxy?: string } {
  const routed = routeRequest(ids.uri, ids.route);
  return {
    uri: routed.uri,
    method,
    headers: {
      'Call-ID': ids.callId, From: ids.from, To: ids.to, CSeq: `${cseq} ${method}`,
      ...(routed.route ? { Route: routed.route } : {}), ...headers,
    },
    // drachtio-server sends a new request to its Request-URI unless told the next hop (its outbound
    // proxy), and it drops a Route header set by an application (its makeTags counts Route among the
    // dialog-level headers a client may not set): the next hop is what reaches the wire. A loose
    // router then routes on the Request-URI, the remote target; a Route is asked for all the same.
    ...(routed.nextHop ? { proxy: routed.nextHop } : {}),
  };
}

/**
 * Sends `method` in a dialog drachtio-server does not hold (it restarted, or the node that made the
 * dialog is gone), as a new request carrying the dialog's Call-ID, tags, remote target and route set,
 * with a CSeq above any the dialog can have used (RFC 3261 12.2.2). Resolves with the final status;
 * rejects when it cannot be sent or gets no answer within `timeoutMs` (`TimeoutError`).
 */
export function requestInLostDialog(srf: Srf, ids: DialogIds, method: 'BYE' | 'OPTIONS', cseq: number, timeoutMs: number, headers: Record<string, string> = {}): Promise<number> {
  const { uri, ...opts } = lostDialogRequest(ids, method, cseq, headers);
  const sent = new Promise<number>((resolve, reject) => {
    try {
      (srf as unknown as OutOfDialogRequester).request(uri, opts, (err, req) => {
        if (err || !req) return reject(err ?? new Error(`${method} not sent`));
        req.on('response', (res) => resolve(res.status));
      });
    } catch (err) {
      reject(err as Error);
    }
  });
  return withTimeout(sent, timeoutMs, 'unanswered');
}
