// Listing and auto-pagination through stripe-node. This file's server holds up to 100
// secrets per scope.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ACCOUNT, ID_RE, SECRET_KEYS, Stripe, expectStripeError, freshAccount, keysOf, payload, startServer, stripeFor, unique } from './harness.mjs';

const { StripeInvalidRequestError } = Stripe.errors;

let server;
let stripe;
const stripeAccount = freshAccount();
const made = []; // [{ id, name, payload }] in creation order

before(async () => {
  server = await startServer({ args: ['--max-secrets-per-scope', '100'] });
  stripe = stripeFor(server);
  for (let i = 0; i < 25; i++) {
    const name = unique(`page${String(i).padStart(2, '0')}`);
    const value = payload(String(i));
    const s = await stripe.apps.secrets.create({ name, payload: value, scope: ACCOUNT }, { stripeAccount });
    made.push({ id: s.id, name, payload: value });
  }
});

after(async () => {
  if (!server) return;
  const code = await server.stop('SIGTERM');
  assert.equal(code, 0, `server exited with ${code} on SIGTERM\n${server.logTail()}`);
  server.cleanup();
});

const newestFirst = () => [...made].reverse().map((m) => m.id);

test('first page shape', async () => {
  const page = await stripe.apps.secrets.list({ scope: ACCOUNT, limit: 10 }, { stripeAccount });
  assert.deepEqual(keysOf(page), ['data', 'has_more', 'object', 'url']);
  assert.equal(page.object, 'list');
  assert.equal(page.url, '/v1/apps/secrets');
  assert.equal(page.has_more, true);
  assert.equal(page.data.length, 10);
  for (const item of page.data) {
    assert.deepEqual(keysOf(item), SECRET_KEYS);
    assert.match(item.id, ID_RE);
    assert.deepEqual(item.scope, { type: 'account' });
  }
  assert.deepEqual(page.data.map((s) => s.id), newestFirst().slice(0, 10));
});

test('for await auto-pagination returns all 25, newest first, no duplicates', async () => {
  const seen = [];
  for await (const s of stripe.apps.secrets.list({ scope: ACCOUNT, limit: 10 }, { stripeAccount })) seen.push(s.id);
  assert.equal(seen.length, 25);
  assert.equal(new Set(seen).size, 25);
  assert.deepEqual(seen, newestFirst());
});

test('autoPagingToArray with expand data.payload', async () => {
  const items = await stripe.apps.secrets
    .list({ scope: ACCOUNT, limit: 7, expand: ['data.payload'] }, { stripeAccount })
    .autoPagingToArray({ limit: 1000 });
  assert.deepEqual(
    items.map((s) => [s.id, s.name, s.payload]),
    [...made].reverse().map((m) => [m.id, m.name, m.payload]),
  );
  for (const item of items) assert.deepEqual(keysOf(item), [...SECRET_KEYS, 'payload'].sort());
});

test('pages by hand with starting_after and ending_before', async () => {
  const ids = newestFirst();
  const p1 = await stripe.apps.secrets.list({ scope: ACCOUNT, limit: 10 }, { stripeAccount });
  const p2 = await stripe.apps.secrets.list({ scope: ACCOUNT, limit: 10, starting_after: p1.data.at(-1).id }, { stripeAccount });
  const p3 = await stripe.apps.secrets.list({ scope: ACCOUNT, limit: 10, starting_after: p2.data.at(-1).id }, { stripeAccount });
  assert.deepEqual(p2.data.map((s) => s.id), ids.slice(10, 20));
  assert.equal(p2.has_more, true);
  assert.deepEqual(p3.data.map((s) => s.id), ids.slice(20));
  assert.equal(p3.has_more, false);
  const back = await stripe.apps.secrets.list({ scope: ACCOUNT, limit: 10, ending_before: p3.data[0].id }, { stripeAccount });
  assert.deepEqual(back.data.map((s) => s.id), ids.slice(10, 20));
});

test('auto-pagination backwards from ending_before', async () => {
  const ids = newestFirst();
  const seen = [];
  for await (const s of stripe.apps.secrets.list({ scope: ACCOUNT, limit: 4, ending_before: ids.at(-1) }, { stripeAccount })) seen.push(s.id);
  assert.deepEqual(seen, ids.slice(0, -1).reverse());
});

test('both cursors are exclusive', async () => {
  await expectStripeError(
    stripe.apps.secrets.list({ scope: ACCOUNT, starting_after: made[5].id, ending_before: made[1].id }, { stripeAccount }),
    { cls: StripeInvalidRequestError, statusCode: 400, code: 'parameters_exclusive' },
  );
});

for (const limit of [0, 101]) {
  test(`limit ${limit} is refused`, async () => {
    await expectStripeError(stripe.apps.secrets.list({ scope: ACCOUNT, limit }, { stripeAccount }), {
      cls: StripeInvalidRequestError,
      statusCode: 400,
      code: 'parameter_out_of_range',
      param: 'limit',
    });
  });
}

test('another app lists nothing in the same account', async () => {
  const other = stripeFor(server, 'sk_test_someoneelse');
  const page = await other.apps.secrets.list({ scope: ACCOUNT }, { stripeAccount });
  assert.deepEqual(page.data, []);
  assert.equal(page.has_more, false);
});
