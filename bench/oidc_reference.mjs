// node-oidc-provider (the certified Node.js OpenID provider) as the reference for
// the refresh row of `make bench` (bench/perf.py, bench/README.md).
//
//   node bench/oidc_reference.mjs PORT COUNT
//
// One process (one core), its default in-memory storage, one confidential client
// (client_secret_basic, RS256 ID tokens, rotating refresh tokens). It mints COUNT
// refresh tokens through its own models (a Grant and a RefreshToken each, as its
// authorization_code grant would), prints them as one JSON line, then listens on
// 127.0.0.1:PORT. Its refresh answer carries a new RS256 ID token (scope openid),
// which ours does not: the reference does more work per request than we do.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import Provider from "oidc-provider";

const [port, count] = process.argv.slice(2).map(Number);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const key = { ...privateKey.export({ format: "jwk" }), kid: "bench", use: "sig", alg: "RS256" };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "bench",
      client_secret: "bench-secret-bench-secret-bench-secret",
      redirect_uris: ["http://127.0.0.1:9/callback"],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
      id_token_signed_response_alg: "RS256",
    },
  ],
  jwks: { keys: [key] },
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  rotateRefreshToken: true,
  ttl: { AccessToken: 3600, IdToken: 3600, Grant: 14 * 86400, RefreshToken: 14 * 86400 },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  scopes: ["openid", "offline_access"],
  features: { devInteractions: { enabled: false } },
});

const client = await provider.Client.find("bench");
const tokens = [];
for (let i = 0; i < count; i += 1) {
  const grant = new provider.Grant({ accountId: `user-${i}`, clientId: "bench" });
  grant.addOIDCScope("openid offline_access");
  const grantId = await grant.save();
  const refresh = new provider.RefreshToken({
    accountId: `user-${i}`,
    client,
    grantId,
    scope: "openid offline_access",
    gty: "authorization_code",
    authTime: Math.floor(Date.now() / 1000),
  });
  tokens.push(await refresh.save());
}
provider.listen(port, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ tokens })}\n`);
});
