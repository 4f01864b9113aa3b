// An independent OpenID Connect relying party for the tests, built on openid-client 6 (panva), not on the
// server's library. One step per run: a JSON request on stdin, one JSON answer on stdout. The RP's state
// (PKCE verifier, state, nonce, tokens) travels in the JSON, so pytest drives the steps and the browser part.
//
//   {"step": "start", "rp": {...}, "params": {...}}           -> {"auth_url", "session": {...}}
//   {"step": "finish", "rp", "session", "callback_url"}         -> {"session", "tokens", "claims"}
//   {"step": "userinfo" | "refresh" | "client_credentials" | "logout_url", "rp", "session"?, "params"?}
//
// "rp" = {issuer, client_id, client_secret?, token_auth?, redirect_uri?}; token_auth is client_secret_basic
// (the default with a secret), client_secret_post, or none (a public client; the default without a secret).
// Failures: exit code 1 and {"error": {name, code, message, error, error_description, status}} on stdout.
import { webcrypto } from "node:crypto";

// Debian 12's Node 18 has WebCrypto only as node:crypto's webcrypto; openid-client expects the global (Node >= 19).
if (!globalThis.crypto) globalThis.crypto = webcrypto;
const client = await import("openid-client");

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function clientAuth(rp) {
  const method = rp.token_auth ?? (rp.client_secret ? "client_secret_basic" : "none");
  switch (method) {
    case "client_secret_basic":
      return client.ClientSecretBasic(rp.client_secret);
    case "client_secret_post":
      return client.ClientSecretPost(rp.client_secret);
    case "none":
      return client.None();
    default:
      throw new Error(`unknown token_auth ${method}`);
  }
}

async function configure(rp) {
  // The test issuer is plain http on loopback: openid-client refuses that unless told. By default it trusts an
  // ID token from the token endpoint on TLS alone (OIDC Core 3.1.3.7); non-repudiation checks make it verify the
  // signature against the issuer's JWKS too, as a test RP must.
  return client.discovery(new URL(rp.issuer), rp.client_id, undefined, clientAuth(rp), {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
    timeout: 30,
  });
}

function tokenSet(tokens) {
  const out = {};
  for (const name of ["access_token", "token_type", "expires_in", "refresh_token", "id_token", "scope"]) {
    if (tokens[name] !== undefined) out[name] = tokens[name];
  }
  return out;
}

const steps = {
  async start(config, req) {
    const codeVerifier = client.randomPKCECodeVerifier();
    const session = {
      code_verifier: codeVerifier,
      state: client.randomState(),
      nonce: client.randomNonce(),
      max_age: req.params?.max_age,
    };
    const params = {
      redirect_uri: req.rp.redirect_uri,
      scope: "openid",
      ...Object.fromEntries(Object.entries(req.params ?? {}).map(([k, v]) => [k, String(v)])),
      response_type: "code",
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: "S256",
      state: session.state,
      nonce: session.nonce,
    };
    return { auth_url: client.buildAuthorizationUrl(config, params).href, session };
  },

  async finish(config, req) {
    const s = req.session;
    const tokens = await client.authorizationCodeGrant(config, new URL(req.callback_url), {
      pkceCodeVerifier: s.code_verifier,
      expectedState: s.state,
      expectedNonce: s.nonce,
      idTokenExpected: true,
      ...(s.max_age !== undefined ? { maxAge: Number(s.max_age) } : {}),
    });
    const claims = tokens.claims();
    return { session: { ...s, ...tokenSet(tokens), sub: claims.sub }, tokens: tokenSet(tokens), claims };
  },

  async userinfo(config, req) {
    const s = req.session;
    return { userinfo: await client.fetchUserInfo(config, s.access_token, s.sub) };
  },

  async refresh(config, req) {
    const s = req.session;
    const tokens = await client.refreshTokenGrant(config, s.refresh_token, req.params ?? {});
    const claims = tokens.claims() ?? null;
    if (claims && s.sub && claims.sub !== s.sub) throw new Error("refreshed ID token has another subject");
    // A server that does not rotate keeps the old refresh token valid: keep it then.
    const session = { ...s, ...tokenSet(tokens) };
    return { session, tokens: tokenSet(tokens), claims };
  },

  async client_credentials(config, req) {
    const tokens = await client.clientCredentialsGrant(config, req.params ?? {});
    return { tokens: tokenSet(tokens) };
  },

  async logout_url(config, req) {
    const params = { ...(req.params ?? {}) };
    if (req.session?.id_token && !("id_token_hint" in params)) params.id_token_hint = req.session.id_token;
    return { logout_url: client.buildEndSessionUrl(config, params).href };
  },
};

function describe(err) {
  const out = { name: err?.name ?? "Error", message: String(err?.message ?? err) };
  for (const key of ["code", "error", "error_description", "status"]) {
    if (err?.[key] !== undefined) out[key] = err[key];
  }
  // openid-client wraps protocol errors: surface the server's OAuth error from the cause.
  const cause = err?.cause;
  if (cause && typeof cause === "object") {
    for (const key of ["error", "error_description", "code"]) {
      if (out[key] === undefined && typeof cause[key] === "string") out[key] = cause[key];
    }
    if (cause instanceof Error && !out.cause) out.cause = cause.message;
  }
  return out;
}

try {
  const req = await readStdin();
  const step = steps[req.step];
  if (!step) throw new Error(`unknown step ${req.step}`);
  const result = await step(await configure(req.rp), req);
  process.stdout.write(JSON.stringify(result));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: describe(err) }));
  process.exitCode = 1;
}
