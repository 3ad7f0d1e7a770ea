// stripe-node against a real `secretstore serve --dev` (default scope maximum of 10).
// Each test works in namespaces nobody else uses (a fresh `acct_` or a fresh app key).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  ACCOUNT,
  PAYLOAD_MARKER,
  REQUEST_ID_RE,
  SECRET_KEYS,
  Stripe,
  appKey,
  assertSecretShape,
  expectStripeError,
  freshAccount,
  keysOf,
  payload,
  startServer,
  stripeFor,
  unique,
} from './harness.mjs';

const { StripeInvalidRequestError, StripeAuthenticationError, StripeIdempotencyError, StripePermissionError } = Stripe.errors;
const YEAR = 365 * 24 * 3600;
const now = () => Math.floor(Date.now() / 1000);

let server;
let stripe;

before(async () => {
  server = await startServer();
  stripe = stripeFor(server);
});

after(async () => {
  if (!server) return;
  const code = await server.stop('SIGTERM');
  assert.equal(code, 0, `server exited with ${code} on SIGTERM\n${server.logTail()}`);
  server.cleanup();
});

const notFound = (name) => ({
  cls: StripeInvalidRequestError,
  statusCode: 404,
  code: 'resource_missing',
  param: 'name',
  message: `No such secret: '${name}'`,
});

describe('create', () => {
  test('answers exactly the contract fields', async () => {
    const name = unique();
    const t0 = now();
    const s = await stripe.apps.secrets.create({ name, payload: payload(), scope: { type: 'account' } }, { stripeAccount: freshAccount() });
    assertSecretShape(s, { name, scope: { type: 'account' }, livemode: false });
    assert.equal(s.expires_at, null);
    assert.ok(s.created >= t0 - 2 && s.created <= now() + 2);
    assert.equal('payload' in s, false);
    assert.equal(s.lastResponse.statusCode, 200);
    assert.match(s.lastResponse.requestId, REQUEST_ID_RE);
  });

  test('the constructor a user writes works as is', async () => {
    const plain = new Stripe('sk_test_plainuser', { host: '127.0.0.1', port: server.port, protocol: 'http' });
    const name = unique();
    const s = await plain.apps.secrets.create({ name, payload: payload(), scope: { type: 'account' } });
    assert.equal(s.name, name);
  });

  test('live key is livemode', async () => {
    const name = unique();
    const s = await stripeFor(server, appKey('live')).apps.secrets.create({ name, payload: payload(), scope: ACCOUNT });
    assertSecretShape(s, { name, scope: { type: 'account' }, livemode: true });
  });

  for (const [mode, livemode] of [['test', false], ['live', true]]) {
    test(`rk_${mode}_ and sk_${mode}_ keys of one app share its secrets`, async () => {
      const app = 'rkapp' + unique('').slice(1, 13);
      const name = unique();
      const value = payload();
      const made = await stripeFor(server, `rk_${mode}_${app}`).apps.secrets.create({ name, payload: value, scope: ACCOUNT });
      assert.equal(made.livemode, livemode);
      const found = await stripeFor(server, `sk_${mode}_${app}`).apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] });
      assert.equal(found.id, made.id);
      assert.equal(found.payload, value);
    });
  }

  test('expand payload on create', async () => {
    const name = unique();
    const value = payload();
    const s = await stripe.apps.secrets.create({ name, payload: value, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount: freshAccount() });
    assertSecretShape(s, { name, scope: { type: 'account' }, livemode: false, withPayload: true });
    assert.equal(s.payload, value);
  });

  test('user scope', async () => {
    const name = unique();
    const s = await stripe.apps.secrets.create({ name, payload: payload(), scope: { type: 'user', user: 'usr_123' } }, { stripeAccount: freshAccount() });
    assertSecretShape(s, { name, scope: { type: 'user', user: 'usr_123' }, livemode: false });
  });

  test('unicode at the length limit round-trips', async () => {
    const stripeAccount = freshAccount();
    const name = '名'.repeat(4990) + unique('').slice(1, 11);
    const value = PAYLOAD_MARKER + '😀'.repeat(5000 - PAYLOAD_MARKER.length);
    assert.equal([...name].length, 5000);
    assert.equal([...value].length, 5000);
    await stripe.apps.secrets.create({ name, payload: value, scope: ACCOUNT }, { stripeAccount });
    const found = await stripe.apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount });
    assert.equal(found.name, name);
    assert.equal(found.payload, value);
  });
});

describe('find', () => {
  test('without and with expand', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const value = payload();
    const made = await stripe.apps.secrets.create({ name, payload: value, scope: ACCOUNT }, { stripeAccount });
    const plain = await stripe.apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount });
    assert.deepEqual({ ...plain }, { ...made });
    assert.equal('payload' in plain, false);
    const full = await stripe.apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount });
    assertSecretShape(full, { name, scope: { type: 'account' }, livemode: false, withPayload: true });
    assert.equal(full.payload, value);
    assert.equal(full.id, made.id);
    assert.equal(full.created, made.created);
  });

  test('missing name is resource_missing', async () => {
    const name = unique('missing');
    const err = await expectStripeError(stripe.apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount: freshAccount() }), notFound(name));
    assert.equal(err.type, 'StripeInvalidRequestError');
  });
});

describe('deleteWhere', () => {
  test('answers the object plus deleted: true, then find is 404', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const made = await stripe.apps.secrets.create({ name, payload: payload(), scope: ACCOUNT }, { stripeAccount });
    const deleted = await stripe.apps.secrets.deleteWhere({ name, scope: ACCOUNT }, { stripeAccount });
    assert.deepEqual(keysOf(deleted), [...SECRET_KEYS, 'deleted'].sort());
    assert.equal(deleted.deleted, true);
    for (const k of SECRET_KEYS) assert.deepEqual(deleted[k], made[k], k);
    await expectStripeError(stripe.apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount }), notFound(name));
    await expectStripeError(stripe.apps.secrets.deleteWhere({ name, scope: ACCOUNT }, { stripeAccount }), notFound(name));
  });

  test('expand payload on delete', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const value = payload();
    await stripe.apps.secrets.create({ name, payload: value, scope: ACCOUNT }, { stripeAccount });
    const deleted = await stripe.apps.secrets.deleteWhere({ name, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount });
    assert.equal(deleted.payload, value);
    assert.equal(deleted.deleted, true);
  });

  test('a replayed delete answers payload null: no kept answer outlives its secret', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const value = payload();
    await stripe.apps.secrets.create({ name, payload: value, scope: ACCOUNT }, { stripeAccount });
    const params = { name, scope: ACCOUNT, expand: ['payload'] };
    const options = { stripeAccount, idempotencyKey: unique('idem') };
    const first = await stripe.apps.secrets.deleteWhere(params, options);
    assert.equal(first.payload, value);
    const again = await stripe.apps.secrets.deleteWhere(params, options);
    assert.equal(again.lastResponse.headers['idempotent-replayed'], 'true');
    assert.equal(again.payload, null);
    assert.equal(again.deleted, true);
    assert.equal(again.id, first.id);
  });
});

describe('isolation', () => {
  test('user scope is separate from account scope', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const user = { type: 'user', user: 'usr_123' };
    const a = await stripe.apps.secrets.create({ name, payload: 'account-' + payload(), scope: ACCOUNT }, { stripeAccount });
    const u = await stripe.apps.secrets.create({ name, payload: 'user-' + payload(), scope: user }, { stripeAccount });
    assert.notEqual(a.id, u.id);
    assert.ok((await stripe.apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount })).payload.startsWith('account-'));
    assert.ok((await stripe.apps.secrets.find({ name, scope: user, expand: ['payload'] }, { stripeAccount })).payload.startsWith('user-'));
    await expectStripeError(
      stripe.apps.secrets.find({ name, scope: { type: 'user', user: 'usr_456' } }, { stripeAccount }),
      notFound(name),
    );
    assert.deepEqual((await stripe.apps.secrets.list({ scope: ACCOUNT }, { stripeAccount })).data.map((s) => s.id), [a.id]);
    assert.deepEqual((await stripe.apps.secrets.list({ scope: user }, { stripeAccount })).data.map((s) => s.id), [u.id]);
  });

  test('Stripe-Account is a separate namespace', async () => {
    const client = stripeFor(server, appKey());
    const name = unique();
    const mine = await client.apps.secrets.create({ name, payload: 'own-' + payload(), scope: ACCOUNT });
    const theirs = await client.apps.secrets.create({ name, payload: 'acct1-' + payload(), scope: ACCOUNT }, { stripeAccount: 'acct_1' });
    assert.notEqual(mine.id, theirs.id);
    assert.ok((await client.apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] })).payload.startsWith('own-'));
    const found = await client.apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount: 'acct_1' });
    assert.ok(found.payload.startsWith('acct1-'));
    await expectStripeError(client.apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount: 'acct_2' }), notFound(name));
  });

  test('stripeAccount in the client config', async () => {
    const key = appKey();
    const name = unique();
    const viaConfig = stripeFor(server, key, { stripeAccount: 'acct_cfg' });
    const made = await viaConfig.apps.secrets.create({ name, payload: payload(), scope: ACCOUNT });
    const found = await stripeFor(server, key).apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount: 'acct_cfg' });
    assert.equal(found.id, made.id);
    await expectStripeError(stripeFor(server, key).apps.secrets.find({ name, scope: ACCOUNT }), notFound(name));
  });

  test('test and live keys are separate', async () => {
    const app = 'modeapp' + unique('').slice(1, 13);
    const test_ = stripeFor(server, `sk_test_${app}`);
    const live = stripeFor(server, `sk_live_${app}`);
    const name = unique();
    const t = await test_.apps.secrets.create({ name, payload: 'test-' + payload(), scope: ACCOUNT });
    await expectStripeError(live.apps.secrets.find({ name, scope: ACCOUNT }), notFound(name));
    assert.deepEqual((await live.apps.secrets.list({ scope: ACCOUNT })).data, []);
    const l = await live.apps.secrets.create({ name, payload: 'live-' + payload(), scope: ACCOUNT });
    assert.notEqual(l.id, t.id);
    assert.equal(l.livemode, true);
    assert.equal(t.livemode, false);
    assert.ok((await test_.apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] })).payload.startsWith('test-'));
  });

  test('two apps never see each other', async () => {
    const a = stripeFor(server, appKey());
    const b = stripeFor(server, appKey());
    const name = unique();
    const stripeAccount = 'acct_shared';
    await a.apps.secrets.create({ name, payload: payload(), scope: ACCOUNT }, { stripeAccount });
    await expectStripeError(b.apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount }), notFound(name));
    await expectStripeError(b.apps.secrets.deleteWhere({ name, scope: ACCOUNT }, { stripeAccount }), notFound(name));
    assert.deepEqual((await b.apps.secrets.list({ scope: ACCOUNT }, { stripeAccount })).data, []);
    // The apiKey request option picks the app per call.
    await expectStripeError(a.apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount, apiKey: appKey() }), notFound(name));
  });
});

describe('replace', () => {
  test('set on an existing name replaces payload and keeps id and created', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const first = await stripe.apps.secrets.create({ name, payload: payload('v1'), scope: ACCOUNT }, { stripeAccount });
    const value = payload('v2');
    const second = await stripe.apps.secrets.create({ name, payload: value, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount });
    assert.equal(second.id, first.id);
    assert.equal(second.created, first.created);
    assert.equal(second.payload, value);
    const found = await stripe.apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount });
    assert.deepEqual([found.id, found.created, found.payload], [first.id, first.created, value]);
  });

  test('replacing without expires_at clears it', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const expires = now() + 3600;
    const first = await stripe.apps.secrets.create({ name, payload: payload(), scope: ACCOUNT, expires_at: expires }, { stripeAccount });
    assert.equal(first.expires_at, expires);
    const second = await stripe.apps.secrets.create({ name, payload: payload(), scope: ACCOUNT }, { stripeAccount });
    assert.equal(second.expires_at, null);
  });
});

describe('expires_at', () => {
  for (const [label, offset] of [['in the past', -3600], ['equal to now', 0], ['over 100 years ahead', 101 * YEAR]]) {
    test(`${label} is refused`, async () => {
      const stripeAccount = freshAccount();
      const name = unique();
      await expectStripeError(
        stripe.apps.secrets.create({ name, payload: payload(), scope: ACCOUNT, expires_at: now() + offset }, { stripeAccount }),
        { cls: StripeInvalidRequestError, statusCode: 400, code: 'parameter_out_of_range', param: 'expires_at' },
      );
      await expectStripeError(stripe.apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount }), notFound(name));
    });
  }

  test('a future value comes back', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const expires = now() + 3600;
    const s = await stripe.apps.secrets.create({ name, payload: payload(), scope: ACCOUNT, expires_at: expires }, { stripeAccount });
    assert.equal(s.expires_at, expires);
    assert.equal((await stripe.apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount })).expires_at, expires);
  });
});

describe('errors', () => {
  test('missing scope is parameter_missing', async () => {
    await expectStripeError(stripe.apps.secrets.create({ name: unique(), payload: payload() }), {
      cls: StripeInvalidRequestError,
      statusCode: 400,
      code: 'parameter_missing',
      param: 'scope',
      message: 'Missing required param: scope.',
    });
  });

  test("the SDK's API version is echoed, a malformed one refused", async () => {
    const stripeAccount = freshAccount();
    const page = await stripe.apps.secrets.list({ scope: ACCOUNT }, { stripeAccount });
    // Whatever version this stripe-node pins, it is a version: accepted and echoed.
    assert.match(page.lastResponse.apiVersion ?? '', /^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$/);
    const pinned = await stripe.apps.secrets.list({ scope: ACCOUNT }, { stripeAccount, apiVersion: '2025-03-31.basil' });
    assert.equal(pinned.lastResponse.apiVersion, '2025-03-31.basil');
    const err = await expectStripeError(stripe.apps.secrets.list({ scope: ACCOUNT }, { stripeAccount, apiVersion: 'garbage' }), {
      cls: StripeInvalidRequestError,
      statusCode: 400,
    });
    assert.equal(err.code, undefined);
    assert.ok(err.raw.message.startsWith('Invalid Stripe API version: garbage.'), err.raw.message);
  });

  test('bad scope[type] is invalid', async () => {
    const err = await expectStripeError(stripe.apps.secrets.create({ name: unique(), payload: payload(), scope: { type: 'team' } }), {
      cls: StripeInvalidRequestError,
      statusCode: 400,
      code: 'parameter_invalid_enum',
      param: 'scope[type]',
    });
    assert.ok(err.message.length > 0);
  });

  test('user scope without a user', async () => {
    await expectStripeError(stripe.apps.secrets.find({ name: unique(), scope: { type: 'user' } }), {
      cls: StripeInvalidRequestError,
      statusCode: 400,
      code: 'parameter_missing',
      param: 'scope[user]',
    });
  });

  test('empty name', async () => {
    await expectStripeError(stripe.apps.secrets.create({ name: '', payload: payload(), scope: ACCOUNT }), {
      cls: StripeInvalidRequestError,
      statusCode: 400,
      code: 'parameter_invalid_string_empty',
      param: 'name',
    });
  });

  test('unknown parameter', async () => {
    await expectStripeError(stripe.apps.secrets.create({ name: unique(), payload: payload(), scope: ACCOUNT, colour: 'blue' }), {
      cls: StripeInvalidRequestError,
      statusCode: 400,
      code: 'parameter_unknown',
      param: 'colour',
      message: 'Received unknown parameter: colour',
    });
  });

  for (const key of ['sk_test_', 'bogus', 'pk_test_abc', 'bogus_keymaterial_abcdefgh']) {
    test(`malformed key ${JSON.stringify(key)} is an authentication error`, async () => {
      const err = await expectStripeError(stripeFor(server, key).apps.secrets.list({ scope: ACCOUNT }), {
        cls: StripeAuthenticationError,
        statusCode: 401,
      });
      // The key is shown at most as its prefix and last four characters.
      assert.ok(!err.message.includes('keymaterial'), err.message);
    });
  }

  for (const account of ['bogus', 'acct_', 'cus_123']) {
    test(`Stripe-Account ${JSON.stringify(account)} is refused`, async () => {
      await expectStripeError(stripe.apps.secrets.create({ name: unique(), payload: payload(), scope: ACCOUNT }, { stripeAccount: account }), {
        cls: StripePermissionError,
        statusCode: 403,
        code: 'account_invalid',
      });
    });
  }

  test('idempotency: same key, same params replays the kept answer', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const idempotencyKey = unique('idem');
    const v1 = payload('v1');
    const params = { name, payload: v1, scope: ACCOUNT, expand: ['payload'] };
    const first = await stripe.apps.secrets.create(params, { stripeAccount, idempotencyKey });
    // Change the secret meanwhile: the replay must not run the request again.
    await stripe.apps.secrets.create({ name, payload: payload('v2'), scope: ACCOUNT }, { stripeAccount });
    const again = await stripe.apps.secrets.create(params, { stripeAccount, idempotencyKey });
    assert.deepEqual({ ...again }, { ...first });
    assert.equal(again.id, first.id);
    assert.equal(again.lastResponse.headers['idempotent-replayed'], 'true');
    const now_ = await stripe.apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount });
    assert.notEqual(now_.payload, v1);
  });

  test('idempotency: same key, other params is an IdempotencyError', async () => {
    const stripeAccount = freshAccount();
    const name = unique();
    const idempotencyKey = unique('idem');
    await stripe.apps.secrets.create({ name, payload: payload('a'), scope: ACCOUNT }, { stripeAccount, idempotencyKey });
    await expectStripeError(stripe.apps.secrets.create({ name, payload: payload('b'), scope: ACCOUNT }, { stripeAccount, idempotencyKey }), {
      cls: StripeIdempotencyError,
      statusCode: 400,
      type: 'idempotency_error',
      code: 'idempotency_key_reused',
    });
  });

  test('answers carry the request headers lastResponse reads, and a replay its original request', async () => {
    const stripeAccount = freshAccount();
    const idempotencyKey = unique('idem');
    const params = { name: unique(), payload: payload(), scope: ACCOUNT };
    const first = await stripe.apps.secrets.create(params, { stripeAccount, idempotencyKey });
    assert.equal(first.lastResponse.idempotencyKey, idempotencyKey);
    assert.equal(first.lastResponse.stripeAccount, stripeAccount);
    assert.equal(first.lastResponse.headers['original-request'], undefined);
    const again = await stripe.apps.secrets.create(params, { stripeAccount, idempotencyKey });
    assert.equal(again.lastResponse.idempotencyKey, idempotencyKey);
    assert.equal(again.lastResponse.stripeAccount, stripeAccount);
    assert.equal(again.lastResponse.headers['idempotent-replayed'], 'true');
    assert.equal(again.lastResponse.headers['original-request'], first.lastResponse.requestId);
    assert.notEqual(again.lastResponse.requestId, first.lastResponse.requestId);
    // Keys are per account, as Stripe scopes them: another account runs the same request anew.
    const elsewhere = await stripe.apps.secrets.create(params, { stripeAccount: freshAccount(), idempotencyKey });
    assert.notEqual(elsewhere.id, first.id);
    assert.equal(elsewhere.lastResponse.headers['idempotent-replayed'], undefined);
  });

  test('idempotency: raw HTTP replay carries Idempotent-Replayed: true', async () => {
    const key = appKey();
    const body = new URLSearchParams({ name: unique(), payload: payload(), 'scope[type]': 'account' }).toString();
    const headers = {
      Authorization: `Bearer ${key}`,
      'Content-Type': 'application/x-www-form-urlencoded',
      'Idempotency-Key': unique('idem'),
    };
    const first = await fetch(`${server.url}/v1/apps/secrets`, { method: 'POST', headers, body });
    const second = await fetch(`${server.url}/v1/apps/secrets`, { method: 'POST', headers, body });
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.deepEqual(await second.json(), await first.json());
    assert.equal(second.headers.get('idempotent-replayed'), 'true');
    assert.match(second.headers.get('request-id') ?? '', REQUEST_ID_RE);
    assert.notEqual(second.headers.get('request-id'), first.headers.get('request-id'));
  });
});

describe('scope maximum (default 10)', () => {
  test('the 11th name is refused; replacing still works when full', async () => {
    const stripeAccount = freshAccount();
    const names = Array.from({ length: 10 }, (_, i) => unique(`full${i}`));
    for (const name of names) await stripe.apps.secrets.create({ name, payload: payload(), scope: ACCOUNT }, { stripeAccount });
    const extra = unique('eleventh');
    await expectStripeError(stripe.apps.secrets.create({ name: extra, payload: payload(), scope: ACCOUNT }, { stripeAccount }), {
      cls: StripeInvalidRequestError,
      statusCode: 400,
      code: 'scope_full',
    });
    const value = payload('replaced');
    const replaced = await stripe.apps.secrets.create({ name: names[4], payload: value, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount });
    assert.equal(replaced.payload, value);
    await stripe.apps.secrets.create({ name: extra, payload: payload(), scope: { type: 'user', user: 'usr_x' } }, { stripeAccount });
    await stripe.apps.secrets.deleteWhere({ name: names[0], scope: ACCOUNT }, { stripeAccount });
    await stripe.apps.secrets.create({ name: extra, payload: payload(), scope: ACCOUNT }, { stripeAccount });
  });
});

describe('awkward names and payloads round-trip', () => {
  for (const name of [
    'with space+plus&amp=eq?q#hash/slash%25pct',
    'quotes "double" \'single\' \\ back',
    'line\nbreak\ttab',
    '[brackets][0]',
    'ünïcödé ключ 鍵 🔑',
  ]) {
    test(JSON.stringify(name), async () => {
      const stripeAccount = freshAccount();
      const value = `${payload()} ${name} %2B+&=`;
      const made = await stripe.apps.secrets.create({ name, payload: value, scope: ACCOUNT }, { stripeAccount });
      assert.equal(made.name, name);
      const found = await stripe.apps.secrets.find({ name, scope: ACCOUNT, expand: ['payload'] }, { stripeAccount });
      assert.deepEqual([found.id, found.name, found.payload], [made.id, name, value]);
      assert.deepEqual((await stripe.apps.secrets.list({ scope: ACCOUNT }, { stripeAccount })).data.map((s) => s.name), [name]);
      const deleted = await stripe.apps.secrets.deleteWhere({ name, scope: ACCOUNT }, { stripeAccount });
      assert.equal(deleted.id, made.id);
      await expectStripeError(stripe.apps.secrets.find({ name, scope: ACCOUNT }, { stripeAccount }), notFound(name));
    });
  }
});
