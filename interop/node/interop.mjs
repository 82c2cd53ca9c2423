// Gatekey with openid-client and jose, as a Node service would use them, with their defaults.
// `make interop` runs this against the local stack (interop/run.py); against a deployed stack
// (the service token needs the scope gatekey:introspect, for step 4):
//   GATEKEY_ISSUER=https://... GATEKEY_AUDIENCE=gatekey GATEKEY_CLIENT_ID=... \
//   GATEKEY_CLIENT_SECRET=... node interop/node/interop.mjs
import * as client from 'openid-client';
import { calculateJwkThumbprint, createRemoteJWKSet, decodeJwt, exportJWK, jwtVerify } from 'jose';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const issuer = new URL(required('GATEKEY_ISSUER'));
const audience = required('GATEKEY_AUDIENCE');
const clientId = required('GATEKEY_CLIENT_ID');
const clientSecret = required('GATEKEY_CLIENT_SECRET');

function ok(step, detail) {
  console.log(`ok  ${step}: ${detail}`);
}

// openid-client v6 refuses plain HTTP unless told; the local stack is http://127.0.0.1, so
// only there is it told. Nothing else about discovery is changed from the defaults.
const execute = issuer.protocol === 'http:' ? [client.allowInsecureRequests] : [];

// 1. Default discovery: {issuer}/.well-known/openid-configuration (OpenID Connect Discovery),
//    with the issuer in the document checked against the one asked for.
const config = await client.discovery(issuer, clientId, clientSecret, undefined, { execute });
const metadata = config.serverMetadata();
ok(
  'openid-client discovery (default)',
  `issuer=${metadata.issuer} token_endpoint=${metadata.token_endpoint} jwks_uri=${metadata.jwks_uri}`,
);

// The RFC 8414 form as well (well-known segment before the issuer's path): for an issuer with
// no path, as here and on a custom domain, it is served too.
const rfc8414 = await client.discovery(issuer, clientId, clientSecret, undefined, {
  execute,
  algorithm: 'oauth2',
});
if (rfc8414.serverMetadata().token_endpoint !== metadata.token_endpoint) {
  throw new Error('RFC 8414 and OpenID discovery disagree');
}
ok('openid-client discovery (RFC 8414, algorithm "oauth2")', 'same metadata');

// 2. client_credentials at the discovered token endpoint, with the service token's Client ID
//    and Secret (openid-client's default client authentication: client_secret_post).
const tokens = await client.clientCredentialsGrant(config, { scope: 'read' });
ok(
  'client_credentials grant',
  `token_type=${tokens.token_type} expires_in=${tokens.expires_in} scope=${tokens.scope}`,
);

// 3. jose jwtVerify with the remote JWKS of the discovered jwks_uri, issuer and audience
//    checked, no clock tolerance; maxTokenAge makes jose check that iat is in the past too.
const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri));
const options = {
  issuer: metadata.issuer,
  audience,
  typ: 'at+jwt',
  clockTolerance: 0,
  maxTokenAge: '1h',
};
const { payload, protectedHeader } = await jwtVerify(tokens.access_token, jwks, options);
const now = Math.floor(Date.now() / 1000);
ok(
  'jose jwtVerify (remote JWKS, clockTolerance 0)',
  `alg=${protectedHeader.alg} kid=${protectedHeader.kid} sub=${payload.sub} ` +
    `iat=now-${now - payload.iat}s nbf=now-${now - payload.nbf}s exp=now+${payload.exp - now}s`,
);

// A verifier whose clock is behind ours, still with no tolerance: 1 s, and 29 s.
for (const behind of [1, 29]) {
  const currentDate = new Date(Date.now() - behind * 1000);
  await jwtVerify(tokens.access_token, jwks, { ...options, currentDate });
  ok(`jose jwtVerify, verifier clock ${behind} s behind`, 'accepted');
}
// 4. RFC 7662 introspection and RFC 7009 revocation at the discovered endpoints, with
//    openid-client's default client authentication (client_secret_post).
for (const name of ['introspection_endpoint', 'revocation_endpoint']) {
  if (!metadata[name]) throw new Error(`the metadata names no ${name}`);
}
const active = await client.tokenIntrospection(config, tokens.access_token);
if (active.active !== true || active.client_id !== clientId || active.jti !== payload.jti) {
  throw new Error(`introspection of a fresh token: ${JSON.stringify(active)}`);
}
ok(
  'openid-client tokenIntrospection',
  `active=${active.active} client_id=${active.client_id} scope=${active.scope} ` +
    `token_type=${active.token_type}`,
);
const garbage = await client.tokenIntrospection(config, 'not-a-token');
if (garbage.active !== false || Object.keys(garbage).length !== 1) {
  throw new Error(`introspection of garbage: ${JSON.stringify(garbage)}`);
}
ok('openid-client tokenIntrospection of garbage', JSON.stringify(garbage));
await client.tokenRevocation(config, tokens.access_token, { token_type_hint: 'access_token' });
const revoked = await client.tokenIntrospection(config, tokens.access_token);
if (revoked.active !== false) throw new Error('a revoked token is still active');
ok('openid-client tokenRevocation', `then introspection: ${JSON.stringify(revoked)}`);
await client.tokenRevocation(config, 'not-a-token'); // RFC 7009 §2.2: no error
ok('openid-client tokenRevocation of garbage', 'accepted (200), as RFC 7009 asks');
// 5. DPoP (RFC 9449) with openid-client's own support (oauth4webapi underneath), for a service
//    token that requires it: a bound token from the token endpoint, then the protected demo
//    route (REST, uncached authorizer) with a fresh proof per request.
const dpopId = process.env.GATEKEY_DPOP_CLIENT_ID;
const dpopSecret = process.env.GATEKEY_DPOP_CLIENT_SECRET;
const protectedUrl = process.env.GATEKEY_PROTECTED_URL;
if (dpopId && dpopSecret && protectedUrl) {
  const dpopConfig = await client.discovery(issuer, dpopId, dpopSecret, undefined, { execute });
  const algs = dpopConfig.serverMetadata().dpop_signing_alg_values_supported ?? [];
  if (!algs.includes('ES256')) throw new Error(`dpop_signing_alg_values_supported: ${algs}`);
  ok('metadata dpop_signing_alg_values_supported', algs.join(' '));
  for (const alg of ['ES256', 'PS256', 'Ed25519']) {
    const keyPair = await client.randomDPoPKeyPair(alg);
    const DPoP = client.getDPoPHandle(dpopConfig, keyPair);
    const bound = await client.clientCredentialsGrant(dpopConfig, { scope: 'read' }, { DPoP });
    const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey));
    const cnf = decodeJwt(bound.access_token).cnf;
    if (bound.token_type.toLowerCase() !== 'dpop' || cnf?.jkt !== jkt) {
      throw new Error(`a DPoP grant gave token_type=${bound.token_type} cnf=${JSON.stringify(cnf)}`);
    }
    ok(`openid-client clientCredentialsGrant with DPoP (${alg})`, `token_type=${bound.token_type} cnf.jkt=${jkt}`);
    const url = new URL(protectedUrl);
    for (const attempt of [1, 2]) {
      const response = await client.fetchProtectedResource(
        dpopConfig, bound.access_token, url, 'GET', undefined, undefined, { DPoP },
      );
      const body = await response.json();
      if (response.status !== 200 || body.auth_method !== 'dpop' || body.client_id !== dpopId) {
        throw new Error(`the protected route answered ${response.status} ${JSON.stringify(body)}`);
      }
      ok(`openid-client fetchProtectedResource with DPoP (${alg}, request ${attempt})`, `${response.status} ${JSON.stringify(body)}`);
    }
    // The bound token without its key: as Bearer, with no proof, with another key's proof.
    const asBearer = await fetch(url, { headers: { authorization: `Bearer ${bound.access_token}` } });
    const noProof = await fetch(url, { headers: { authorization: `DPoP ${bound.access_token}` } });
    const thief = client.getDPoPHandle(dpopConfig, await client.randomDPoPKeyPair('ES256'));
    const otherKey = await client.fetchProtectedResource(
      dpopConfig, bound.access_token, url, 'GET', undefined, undefined, { DPoP: thief },
    );
    const statuses = [asBearer.status, noProof.status, otherKey.status];
    if (statuses.some((status) => status !== 403)) throw new Error(`stolen token: ${statuses}`);
    ok(`the bound token as Bearer, without a proof, with another key's proof (${alg})`, statuses.join(' '));
  }
  try {
    await client.clientCredentialsGrant(dpopConfig, { scope: 'read' });
    throw new Error('a token that requires DPoP was issued without a proof');
  } catch (error) {
    if (error.error !== 'invalid_dpop_proof') throw error;
    ok('a grant without a proof, for a token that requires DPoP', `${error.status} ${error.error}`);
  }
}
console.log('interop: all passed');
