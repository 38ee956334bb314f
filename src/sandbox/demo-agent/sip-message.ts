/** Just enough SIP message handling (RFC 3261 over UDP) for the demo agent: parse, read headers, build. */

/** Compact header forms (RFC 3261 7.3.3 and later RFCs) and their full names, lower-cased. */
const COMPACT: Record<string, string> = {
  i: 'call-id', m: 'contact', e: 'content-encoding', l: 'content-length', c: 'content-type', f: 'from',
  k: 'supported', s: 'subject', t: 'to', v: 'via', r: 'refer-to', b: 'referred-by', o: 'event', u: 'allow-events',
  x: 'session-expires', a: 'accept-contact', j: 'reject-contact', d: 'request-disposition', y: 'identity',
  n: 'identity-info',
};

export interface SipHeader {
  /** Lower-case full name (compact forms expanded). */
  name: string;
  value: string;
}

interface SipMessageBase {
  /** In the order received; a name may repeat (Via, Record-Route). */
  headers: SipHeader[];
  body: string;
}

export interface SipRequest extends SipMessageBase {
  kind: 'request';
  method: string;
  uri: string;
}

export interface SipResponse extends SipMessageBase {
  kind: 'response';
  status: number;
  reason: string;
}

export type SipMessage = SipRequest | SipResponse;

const REQUEST_LINE = /^([A-Za-z]+) (\S+) SIP\/2\.0$/;
const STATUS_LINE = /^SIP\/2\.0 (\d{3}) ?(.*)$/;
const HEADER_END = Buffer.from('\r\n\r\n');

/** Parses one datagram; null for anything that is not a SIP message (keep-alives, garbage). */
export function parseSipMessage(datagram: Buffer): SipMessage | null {
  const end = datagram.indexOf(HEADER_END);
  if (end < 0) return null;
  const lines = datagram.toString('utf8', 0, end).split(/\r?\n/);
  const start = (lines.shift() ?? '').trim();
  const headers: SipHeader[] = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line) && headers.length > 0) {
      headers[headers.length - 1]!.value += ` ${line.trim()}`; // folded continuation line
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) return null;
    const raw = line.slice(0, colon).trim().toLowerCase();
    headers.push({ name: COMPACT[raw] ?? raw, value: line.slice(colon + 1).trim() });
  }
  const bodyBytes = datagram.subarray(end + HEADER_END.length);
  const declared = headers.find((h) => h.name === 'content-length');
  const length = declared ? Number.parseInt(declared.value, 10) : bodyBytes.length;
  if (!Number.isFinite(length) || length < 0 || length > bodyBytes.length) return null;
  const body = bodyBytes.subarray(0, length).toString('utf8');

  const request = REQUEST_LINE.exec(start);
  if (request) return { kind: 'request', method: request[1]!.toUpperCase(), uri: request[2]!, headers, body };
  const status = STATUS_LINE.exec(start);
  if (status) return { kind: 'response', status: Number(status[1]), reason: status[2] ?? '', headers, body };
  return null;
}

/** The first value of a header, or undefined. */
export function header(msg: SipMessageBase, name: string): string | undefined {
  return msg.headers.find((h) => h.name === name)?.value;
}

/** Every value of a header, in order, split on commas outside quotes and angle brackets. */
export function headerValues(msg: SipMessageBase, name: string): string[] {
  return msg.headers.filter((h) => h.name === name).flatMap((h) => splitList(h.value));
}

function splitList(value: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let from = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '"' && value[i - 1] !== '\\') quoted = !quoted;
    else if (!quoted && c === '<') depth++;
    else if (!quoted && c === '>') depth = Math.max(0, depth - 1);
    else if (!quoted && depth === 0 && c === ',') {
      out.push(value.slice(from, i).trim());
      from = i + 1;
    }
  }
  out.push(value.slice(from).trim());
  return out.filter((v) => v.length > 0);
}

/** The `tag` parameter of a From/To value (outside its <URI>). */
export function tagOf(nameAddr: string | undefined): string | null {
  if (!nameAddr) return null;
  const params = nameAddr.includes('>') ? nameAddr.slice(nameAddr.lastIndexOf('>') + 1) : nameAddr;
  return /;\s*tag=([^;\s,]+)/i.exec(params)?.[1] ?? null;
}

/** The URI of a name-addr (`"x" <sip:a@b>;p`) or addr-spec (`sip:a@b;p`) value. */
export function uriOf(nameAddr: string | undefined): string | null {
  if (!nameAddr) return null;
  const angle = /<([^>]*)>/.exec(nameAddr);
  if (angle) return angle[1]!.trim();
  return nameAddr.split(';')[0]!.trim() || null;
}

/** CSeq number and method. */
export function cseqOf(msg: SipMessageBase): { seq: number; method: string } | null {
  const m = /^(\d+)\s+([A-Za-z]+)/.exec(header(msg, 'cseq') ?? '');
  return m ? { seq: Number(m[1]), method: m[2]!.toUpperCase() } : null;
}

/** The branch of the top Via (identifies the transaction). */
export function topBranch(msg: SipMessageBase): string | null {
  const via = headerValues(msg, 'via')[0];
  return via ? /;\s*branch=([^;\s,]+)/i.exec(via)?.[1] ?? null : null;
}

const CANONICAL: Record<string, string> = {
  'call-id': 'Call-ID', cseq: 'CSeq', 'www-authenticate': 'WWW-Authenticate', 'record-route': 'Record-Route',
};

function canonicalName(name: string): string {
  return CANONICAL[name] ?? name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

/** Serialises a message; Content-Length is always written from the body. */
export function serialize(startLine: string, headers: ReadonlyArray<[string, string]>, body = ''): Buffer {
  const lines = [startLine];
  for (const [name, value] of headers) {
    if (name.toLowerCase() === 'content-length') continue;
    lines.push(`${canonicalName(name.toLowerCase())}: ${value}`);
  }
  lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

export const REASONS: Record<number, string> = {
  100: 'Trying', 180: 'Ringing', 200: 'OK', 400: 'Bad Request', 480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist', 487: 'Request Terminated', 488: 'Not Acceptable Here',
  500: 'Server Internal Error', 501: 'Not Implemented', 503: 'Service Unavailable',
};

export interface ResponseOptions {
  /** Our To tag, added when the request's To has none (every response but 100). */
  toTag?: string;
  /** Extra headers (Contact, Content-Type, Allow...). */
  headers?: Array<[string, string]>;
  body?: string;
}

/** A response to `req`: its Vias (all, in order), From, To, Call-ID and CSeq copied, as RFC 3261 8.2.6 asks. */
export function buildResponse(req: SipRequest, status: number, opts: ResponseOptions = {}): Buffer {
  const out: Array<[string, string]> = [];
  for (const h of req.headers) if (h.name === 'via') out.push(['via', h.value]);
  // A UAS copies Record-Route into the responses that create or refresh a dialog (RFC 3261 12.1.1).
  if (req.method === 'INVITE' && status > 100 && status < 300) {
    for (const h of req.headers) if (h.name === 'record-route') out.push(['record-route', h.value]);
  }
  out.push(['from', header(req, 'from') ?? '']);
  let to = header(req, 'to') ?? '';
  if (status > 100 && opts.toTag && !tagOf(to)) to = `${to};tag=${opts.toTag}`;
  out.push(['to', to]);
  out.push(['call-id', header(req, 'call-id') ?? '']);
  out.push(['cseq', header(req, 'cseq') ?? '']);
  out.push(...(opts.headers ?? []));
  return serialize(`SIP/2.0 ${status} ${REASONS[status] ?? 'Unknown'}`, out, opts.body ?? '');
}
