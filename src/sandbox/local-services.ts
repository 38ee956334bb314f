import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Sequelize } from 'sequelize';
import { connectDatabase, migrate } from '../cdr/db';
import { classifyPgError, maskedDatabaseUrl, PgProblem } from '../cdr/pg-errors';
import { Logger } from '../log';
import { findProgram } from './processes';
import { findDrachtio, startDrachtio, DrachtioServer } from './local-drachtio';
import { RtpengineInstance, startRtpengine } from './local-rtpengine';
import { makeSandboxTls } from './sandbox-ca';
import type { SandboxSipTlsContact } from './sandbox';

type Env = Record<string, string | undefined>;

/**
 * The sandbox's database when DATABASE_URL is not set: the machine's Postgres, as the role scripts/setup.sh
 * makes (with its password, which Debian's default authentication asks for; otherwise set DATABASE_URL).
 */
export const SANDBOX_DATABASE_URL = 'postgres://bridge:localdev@127.0.0.1:5432/wasb_sandbox';
const COMPOSE_SANDBOX = '`docker compose --env-file docker/sandbox.env --profile sandbox up sandbox`';
/** Each wait on a program the sandbox starts. */
const START_TIMEOUT_MS = 15_000;

export interface LocalServices {
  /** The settings that point the bridge at them (DATABASE_URL, DRACHTIO_*, RTPENGINE_*). */
  env: Env;
  /** Where a PBX sends agents' calls (the sandbox's drachtio-server's SIP address). */
  sipUri: string | null;
  /** `--provider meta-sip`: the drachtio-server's TLS contact that is Meta's, and its certificate; null otherwise. */
  metaSipContact: SandboxSipTlsContact | null;
  stop(): Promise<void>;
}

export class MissingProgramError extends Error {}

/**
 * What the bridge needs besides itself, for a machine with none of it running: the database (created
 * and migrated), and an rtpengine and a drachtio-server from PATH on loopback, unless RTPENGINE_NG or
 * DRACHTIO_HOST say where running ones are (docker compose's sandbox profile runs them as containers).
 */
export async function startLocalServices(env: Env, log: Logger): Promise<LocalServices> {
  const out: Env = {};
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    out.DATABASE_URL = env.DATABASE_URL?.trim() || SANDBOX_DATABASE_URL;
    await prepareDatabase(out.DATABASE_URL, log);

    const pbxAddress = env.SANDBOX_SIP_ADDRESS?.trim() || '127.0.0.1';
    if (!env.RTPENGINE_NG?.trim()) {
      const bin = findProgram('rtpengine', 'RTPENGINE_BIN');
      if (!bin) throw new MissingProgramError(`rtpengine is not on PATH: install Debian's rtpengine-daemon, or set RTPENGINE_NG to a running one (or use ${COMPOSE_SANDBOX})`);
      // The WhatsApp side faces the browser (or Meta's simulated media): on SANDBOX_HOST (--listen) when asked.
      const waAddress = env.SANDBOX_HOST?.trim() || '127.0.0.1';
      const r: RtpengineInstance = await startRtpengine({ bin, portMin: 40000, portMax: 40999, interfaces: [`wa/${waAddress}`, `pbx/${pbxAddress}`] });
      stops.push(() => r.proc.stop());
      out.RTPENGINE_NG = `${r.ng.host}:${r.ng.port}`;
      out.RTPENGINE_DTMF_LOG = `${r.dtmfLog.host}:${r.dtmfLog.port}`;
      log.info({ ng: out.RTPENGINE_NG }, 'sandbox: rtpengine started');
    }
    let sipUri: string | null = null;
    let metaSipContact: SandboxSipTlsContact | null = null;
    if (!env.DRACHTIO_HOST?.trim()) {
      const bin = findDrachtio();
      if (!bin) throw new MissingProgramError(`drachtio-server is not on PATH: build it from github.com/drachtio/drachtio-server and put \`drachtio\` on PATH or set DRACHTIO_BIN, or set DRACHTIO_HOST/DRACHTIO_PORT/DRACHTIO_SECRET to a running one (or use ${COMPOSE_SANDBOX})`);
      const sipPort = Number(env.SANDBOX_SIP_PORT?.trim() || 5060);
      // `--provider meta-sip`: a TLS contact too, Meta's, with a certificate from a CA made for the sandbox.
      const metaSip = env.WA_PROVIDER?.trim() === 'meta-sip';
      const dir = metaSip ? fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-sandbox-tls-')) : null;
      if (dir) stops.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
      const tls = dir ? await makeSandboxTls(dir) : null;
      const tlsPort = tls ? Number(env.SANDBOX_META_SIP_PORT?.trim() || 5061) : undefined;
      const d: DrachtioServer = await startDrachtio(bin, { sipHost: pbxAddress, sipPort, secret: crypto.randomBytes(16).toString('hex'), ...(tls ? { tls, tlsPort } : {}) });
      stops.push(() => d.proc.stop());
      if (tls) metaSipContact = { host: '127.0.0.1', port: d.tlsPort!, tls };
      out.DRACHTIO_HOST = '127.0.0.1';
      out.DRACHTIO_PORT = String(d.adminPort);
      out.DRACHTIO_SECRET = d.secret;
      sipUri = `sip:${d.sipHost}:${d.sipPort}`;
      log.info({ sip: sipUri }, 'sandbox: drachtio-server started');
    } else if (env.SANDBOX_SIP_ADDRESS?.trim() || env.SANDBOX_SIP_PORT?.trim()) {
      // A drachtio-server started for the sandbox elsewhere, whose SIP address is given (docker compose's
      // sandbox profile passes sandbox-drachtio's): DRACHTIO_PORT is its admin port, not where a PBX calls.
      sipUri = `sip:${pbxAddress}:${Number(env.SANDBOX_SIP_PORT?.trim() || 5060)}`;
    }
    return { env: out, sipUri, metaSipContact, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Postgres refused the sandbox's database, or it could not be made ready: the message says what to do. */
export class SandboxDatabaseError extends Error {}

/** What the messages call the URL the sandbox uses. */
const URL_NAME = "the sandbox's DATABASE_URL";

/**
 * Creates the database if it is not there, and applies the migrations; every statement is bounded. A
 * Postgres that is not up yet is waited for (START_TIMEOUT_MS); refused credentials or any other problem
 * stop the sandbox at once, naming Postgres and the URL.
 */
async function prepareDatabase(url: string, log: Logger): Promise<void> {
  const db = await connectOrCreate(url, log);
  try {
    await migrate(db).catch((err: unknown) => {
      throw new SandboxDatabaseError(`migrating ${URL_NAME} failed: ${classifyPgError(err, url, URL_NAME).message}`);
    });
  } finally {
    await db.close();
  }
}

/** A connection to the database, created first (through the server's "postgres" database) when missing. */
async function connectOrCreate(url: string, log: Logger): Promise<Sequelize> {
  const first = await reach(url, log);
  if (first.ok) return first.db;
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new SandboxDatabaseError(`${first.problem.message} (its name is not a plain identifier, so the sandbox does not create it)`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const server = await reach(admin.toString(), log);
  if (!server.ok) throw new SandboxDatabaseError(`database "${name}" does not exist and cannot be created: ${server.problem.message}`);
  try {
    await server.db.query(`CREATE DATABASE ${name}`);
    log.info({ database: name }, 'sandbox: database created');
  } catch (err) {
    const p = classifyPgError(err, url, URL_NAME);
    // 42P04: made meanwhile (another sandbox starting); 42501: no CREATEDB privilege.
    const code = (err as { parent?: { code?: string } }).parent?.code;
    if (code !== '42P04') {
      throw new SandboxDatabaseError(code === '42501'
        ? `database "${name}" does not exist and the role in ${URL_NAME} may not create it: create it (sudo -u postgres createdb -O ${decodeURIComponent(admin.username) || 'OWNER'} ${name})`
        : `creating database "${name}" failed: ${p.message}`);
    }
  } finally {
    await server.db.close();
  }
  const again = await reach(url, log);
  if (!again.ok) throw new SandboxDatabaseError(again.problem.message);
  return again.db;
}

type Reached = { ok: true; db: Sequelize } | { ok: false; problem: PgProblem & { kind: 'no-database' } };

/**
 * Connects to `url`, waiting (bounded) while Postgres is not reachable; a missing database is returned
 * as such, anything else thrown at once as a SandboxDatabaseError.
 */
async function reach(url: string, log: Logger): Promise<Reached> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (let attempt = 1; ; attempt++) {
    const db = connectDatabase(url, START_TIMEOUT_MS);
    try {
      await db.authenticate();
      return { ok: true, db };
    } catch (err) {
      await db.close().catch(() => undefined);
      const problem = classifyPgError(err, url, URL_NAME);
      if (problem.kind === 'no-database') return { ok: false, problem: { ...problem, kind: 'no-database' } };
      if (!problem.retryable || Date.now() >= deadline) throw new SandboxDatabaseError(problem.message);
      if (attempt === 1) log.warn({ url: maskedDatabaseUrl(url) }, `sandbox: ${problem.message}; waiting up to ${START_TIMEOUT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, Math.min(2000, 250 * attempt)));
    }
  }
}
