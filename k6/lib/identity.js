// Who the k6 users are, as the app sees them at join.
//
// With ISSUER_JWK (the path of a private JWK written by `tools/issuer keygen`, as
// k6/run passes it), every join carries a real ES256 id token signed with that key,
// minted here with k6's WebCrypto: each VU imports the key once and signs a token per
// user it plays (kept until a minute before it expires), so the app verifies a real
// signature on every join (BOXOFFICE_IDENTITY_MODE=jwt). Without ISSUER_JWK the join
// sends a plain userId, as an app in BOXOFFICE_IDENTITY_MODE=development (`./dev up`)
// takes it.
//
// Environment (all optional):
//   ISSUER_JWK         private JWK file (ES256) -> jwt mode
//   ISSUER, AUDIENCE   the iss and aud claims (https://login.boxoffice.test, boxoffice:
//                      tools/issuer's defaults)
//   ID_TOKEN_TTL       seconds a minted token lives (7200)
//   ID_TOKEN_POOL      a file of pre-minted tokens, one per line (`tools/issuer mint DIR
//                      --count N --prefix P`), whose line i is for the user
//                      ID_TOKEN_POOL_PREFIX + i. Scenarios that need a fresh user on
//                      every iteration take them from here first (loaded once into a
//                      SharedArray: no copy per VU, no signing during the run), so that
//                      at thousands of joins a second k6 spends its CPU on requests,
//                      not on signatures; when it runs out they mint as above.

import encoding from 'k6/encoding';
import { SharedArray } from 'k6/data';

const JWK = __ENV.ISSUER_JWK ? JSON.parse(open(__ENV.ISSUER_JWK)) : null;
const ISSUER = __ENV.ISSUER || 'https://login.boxoffice.test';
const AUDIENCE = __ENV.AUDIENCE || 'boxoffice';
const TTL = Number(__ENV.ID_TOKEN_TTL || 7200);
const POOL_PREFIX = __ENV.ID_TOKEN_POOL_PREFIX || '';
const POOL = __ENV.ID_TOKEN_POOL
  ? new SharedArray('id token pool', () => open(__ENV.ID_TOKEN_POOL).split('\n').filter((line) => line.length > 0))
  : [];

/** True when joins carry signed id tokens (the app runs BOXOFFICE_IDENTITY_MODE=jwt). */
export const JWT = JWK !== null;
if (JWT && JWK.alg !== 'ES256') throw new Error(`ISSUER_JWK: k6 mints ES256 only, the key is ${JWK.alg}`);

const HEADER = JWT ? b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: JWK.kid })) : '';

function b64url(value) {
  return encoding.b64encode(value, 'rawurl');
}

// k6 has no TextEncoder; the signing input is base64url, so plain ASCII.
function ascii(text) {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes.buffer;
}

let key = null; // per VU: the imported signing key (a Promise until it resolves)
const minted = new Map(); // per VU: user -> { token, exp }

async function signingKey() {
  if (key === null) {
    key = crypto.subtle.importKey('jwk', JWK, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  }
  return key;
}

/** A signed id token for `user` (sub), minted in this VU. */
export async function idToken(user) {
  const now = Math.floor(Date.now() / 1000);
  const cached = minted.get(user);
  if (cached && cached.exp - 60 > now) return cached.token;
  const exp = now + TTL;
  const claims = { iss: ISSUER, aud: AUDIENCE, sub: user, iat: now, nbf: now - 5, exp };
  const input = `${HEADER}.${b64url(JSON.stringify(claims))}`;
  const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, await signingKey(), ascii(input));
  const token = `${input}.${b64url(signature)}`; // WebCrypto's ECDSA signature is r||s, as ES256 wants
  if (minted.size > 1000) minted.clear(); // fresh-user scenarios: no unbounded cache
  minted.set(user, { token, exp });
  return token;
}

/** Pre-minted token number `i` (0-based) of ID_TOKEN_POOL and its user, or null. */
export function pooled(i) {
  if (!JWT || i >= POOL.length) return null;
  return { user: `${POOL_PREFIX}${i + 1}`, idToken: POOL[i] };
}

/**
 * The join body's identity for `user`: `{idToken}` in jwt mode (the app takes the fan
 * from its `sub`), `{userId}` otherwise. `preMinted` is a pooled() token to use as is.
 */
export async function credentials(user, preMinted) {
  if (!JWT) return { userId: user };
  return { idToken: preMinted ? preMinted.idToken : await idToken(user) };
}
