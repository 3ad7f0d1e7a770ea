// Starts the real `secretstore` binary for the end-to-end stripe-node tests, and helpers.
//
// Each test file starts its own server (`startServer`) on 127.0.0.1 with an OS-chosen port
// and a fresh temporary data directory, learns the port from the one ready line the server
// prints on stdout, and keeps reading stdout (into the log file, beside stderr) so the pipe
// never fills. The binary is $SECRETSTORE_BIN, else target/debug/secretstore under the
// repository root (scripts/test builds it first).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import Stripe from 'stripe';

export { Stripe };

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const READY_RE = /^secretstore listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

/** Every payload the tests store carries this, so output can be searched for plaintext. */
export const PAYLOAD_MARKER = 'zqxPLAINTEXTzqx';
export const ID_RE = /^appsecret_[A-Za-z0-9]{30}$/;
export const REQUEST_ID_RE = /^req_[A-Za-z0-9_]+$/;
export const SECRET_KEYS = ['created', 'expires_at', 'id', 'livemode', 'name', 'object', 'scope'];
export const ACCOUNT = Object.freeze({ type: 'account' });

export function binaryPath() {
  const raw = process.env.SECRETSTORE_BIN || 'target/debug/secretstore';
  return path.isAbsolute(raw) ? raw : path.join(REPO_ROOT, raw);
}

/** A name no other test uses. */
export function unique(prefix = 'name') {
  return `${prefix}-${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

/** A payload carrying PAYLOAD_MARKER. */
export function payload(tag = '') {
  return `${PAYLOAD_MARKER}-${tag}-${randomUUID()}`;
}

/** An `acct_` id no other test uses: a fresh, empty namespace in dev mode. */
export function freshAccount() {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return 'acct_' + Array.from(randomBytes(16), (b) => alphabet[b % alphabet.length]).join('');
}

/** A dev-mode key for app `app` (default: a fresh app of its own). */
export function appKey(mode = 'test', app = null, kind = 'sk') {
  return `${kind}_${mode}_${app ?? 'app' + randomUUID().replaceAll('-', '').slice(0, 12)}`;
}

/**
 * Starts `secretstore serve --dev` and resolves once it is listening.
 * Returns { url, port, dataDir, logPath, stop(signal) -> exit code or signal name, logText() }.
 */
export async function startServer({ args = [], dataDir = null } = {}) {
  const bin = binaryPath();
  if (!existsSync(bin)) {
    throw new Error(`secretstore binary not found at ${bin}; run \`cargo build --bin secretstore\` or set SECRETSTORE_BIN`);
  }
  const root = mkdtempSync(path.join(tmpdir(), 'secretstore-node-'));
  const data = dataDir ?? path.join(root, 'data');
  const logPath = path.join(root, 'server.log');
  const argv = ['serve', '--dev', '--listen', '127.0.0.1:0', '--data', data, ...args];
  appendFileSync(logPath, `=== start: ${bin} ${argv.join(' ')}\n`);
  const logFd = openSync(logPath, 'a');
  // Settings come only from this harness, never from the caller's shell.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SECRETSTORE_')));
  const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', logFd], env, cwd: root });
  closeSync(logFd);

  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal));
  });
  const logText = () => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  const logTail = () => logText().split('\n').slice(-40).join('\n');

  const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
  let onReady;
  const ready = new Promise((resolve) => {
    onReady = resolve;
  });
  lines.on('line', (line) => {
    appendFileSync(logPath, `[stdout] ${line}\n`);
    const m = READY_RE.exec(line);
    if (m) onReady({ url: m[1], port: Number(m[2]) });
  });

  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`server not ready in ${START_TIMEOUT_MS} ms\n${logTail()}`)), START_TIMEOUT_MS);
  });
  const early = exited.then((code) => {
    throw new Error(`server exited (${code}) before it was ready\n${logTail()}`);
  });
  const spawnError = new Promise((_, reject) => child.on('error', reject));
  let found;
  try {
    found = await Promise.race([ready, timeout, early, spawnError]);
  } catch (err) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
    early.catch(() => {});
  }

  let stopped = null;
  async function stop(signal = 'SIGTERM') {
    if (stopped) return stopped;
    stopped = (async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      let t;
      const limit = new Promise((resolve) => {
        t = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS);
      });
      const result = await Promise.race([exited, limit]);
      clearTimeout(t);
      if (result === 'timeout') {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`server did not stop within ${STOP_TIMEOUT_MS} ms of ${signal}`);
      }
      return result;
    })();
    return stopped;
  }

  return { ...found, host: '127.0.0.1', dataDir: data, logPath, logText, logTail, stop, root, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** A stripe-node client pointed at `server`, set up exactly as a user would. */
export function stripeFor(server, key = 'sk_test_nodesdk', extra = {}) {
  return new Stripe(key, { host: '127.0.0.1', port: server.port, protocol: 'http', ...extra });
}

/** Raw JSON keys of an SDK answer, sorted (lastResponse is not enumerable). */
export function keysOf(obj) {
  return Object.keys(obj).sort();
}

/** Checks an `apps.secret` answer against docs/api.md §1. */
export function assertSecretShape(obj, { name, scope, livemode, withPayload = false }) {
  const expected = withPayload ? [...SECRET_KEYS, 'payload'].sort() : SECRET_KEYS;
  assert.deepEqual(keysOf(obj), expected);
  assert.match(obj.id, ID_RE);
  assert.equal(obj.object, 'apps.secret');
  assert.ok(Number.isInteger(obj.created), `created ${obj.created}`);
  assert.ok(Math.abs(obj.created - Date.now() / 1000) < 300, `created ${obj.created}`);
  assert.equal(obj.livemode, livemode);
  assert.equal(obj.name, name);
  assert.deepEqual(obj.scope, scope);
}

/**
 * Awaits `promise`, which must reject with a Stripe error of class `cls` carrying the given
 * fields (undefined fields are not checked). Returns the error.
 */
export async function expectStripeError(promise, { cls, statusCode, type = 'invalid_request_error', code, param, message }) {
  let caught = null;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, 'expected the request to fail');
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${caught?.constructor?.name}: ${caught?.message}`);
  assert.equal(caught.statusCode, statusCode, caught.message);
  assert.equal(caught.raw?.type, type);
  if (code !== undefined) assert.equal(caught.code, code);
  if (param !== undefined) assert.equal(caught.param, param);
  // The server's own message is `raw.message`; since 23.2.0 stripe-node shows it as
  // `[req_...] message`, the Request-Id header of the answer first.
  if (message !== undefined) assert.equal(caught.raw?.message, message);
  assert.ok(typeof caught.raw?.message === 'string' && caught.raw.message.length > 0);
  assert.match(caught.requestId ?? '', REQUEST_ID_RE);
  assert.equal(caught.message, `[${caught.requestId}] ${caught.raw.message}`);
  assert.equal(caught.headers?.['request-id'], caught.requestId);
  assert.ok(!caught.message.includes(PAYLOAD_MARKER), caught.message);
  return caught;
}
