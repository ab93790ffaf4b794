// A Pro Santé Connect stand-in for the end-to-end tests: node-oidc-provider (a
// certified OpenID provider) configured with PSC's shape (docs/OPERATING.md,
// "Pro Santé Connect"): discovery at a non-standard path, authorization and
// end-session on another host:port than the issuer, acr "eidas1", scope
// "scope_all", claims SubjectNameID / given_name / family_name / SubjectRefPro in
// userinfo, ES256 ID tokens, client_secret_basic. Started by tests/e2e/psc.py.
//
// Environment: PSC_ISSUER_PORT, PSC_WALLET_PORT, PSC_CLIENT_ID, PSC_CLIENT_SECRET,
// PSC_REDIRECT_URI, PSC_POST_LOGOUT_URI. The login page (/interaction/<uid>) is a
// form: "login" is the SubjectNameID to sign in as, "acr" the level to answer.
// POST /__standin/fail-next-token makes the next code exchange fail (503).
import crypto from "node:crypto";
import http from "node:http";
import Provider from "oidc-provider";

const env = process.env;
const issuer = `http://127.0.0.1:${env.PSC_ISSUER_PORT}`;
const wallet = `http://localhost:${env.PSC_WALLET_PORT}`;
const DISCOVERY = "/.well-known/wallet-openid-configuration";

const key = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
const jwk = { ...key.export({ format: "jwk" }), alg: "ES256", use: "sig", kid: "standin-1" };

const PSC_CLAIMS = ["SubjectNameID", "given_name", "family_name", "SubjectRefPro"];

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: env.PSC_CLIENT_ID,
      client_secret: env.PSC_CLIENT_SECRET,
      redirect_uris: [env.PSC_REDIRECT_URI],
      post_logout_redirect_uris: [env.PSC_POST_LOGOUT_URI],
      token_endpoint_auth_method: "client_secret_basic",
      id_token_signed_response_alg: "ES256",
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(16).toString("hex")] },
  scopes: ["openid", "scope_all"],
  claims: { openid: ["sub"], scope_all: PSC_CLAIMS },
  acrValues: ["eidas1", "eidas0"],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      // No confirmation page: the hint names the session (as PSC's Keycloak does).
      logoutSource: async (ctx, form) => {
        ctx.body = `<!doctype html><html><body>${form}<script>document.forms[0].submit()</script>
          <noscript><button form="op.logoutForm" name="logout" value="yes">Logout</button></noscript>
          </body></html>`;
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: `psc-${id}`,
          SubjectNameID: id,
          given_name: "Alice",
          family_name: "Martin",
          SubjectRefPro: { codeCivilite: "M", exercices: [{ codeProfession: "60" }] },
        };
      },
    };
  },
  async loadExistingGrant(ctx) {
    // Consent is implicit at PSC: every client gets "openid scope_all" and its claims.
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid scope_all");
    grant.addOIDCClaims(PSC_CLAIMS);
    await grant.save();
    return grant;
  },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600 },
});
provider.proxy = false;

function page(res, status, html) {
  res.writeHead(status, { "Content-Type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><html lang="fr"><head><title>Pro Santé Connect (test)</title></head><body>${html}</body></html>`);
}

async function interaction(req, res) {
  const uid = req.url.split("/")[2].split("?")[0];
  if (req.method === "GET") {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return page(res, 400, "wrong interaction");
    return page(res, 200, `<h1>Pro Santé Connect (test)</h1>
      <form method="post" action="/interaction/${uid}">
        <label for="login">Identifiant national</label>
        <input id="login" name="login" value="">
        <input type="hidden" name="acr" value="eidas1">
        <button type="submit">Valider avec e-CPS</button>
      </form>`);
  }
  let body = "";
  for await (const chunk of req) body += chunk;
  const form = new URLSearchParams(body);
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: form.get("login"), acr: form.get("acr") || "eidas1", amr: ["pop", "mfa"] } },
    { mergeWithLastSubmission: false },
  );
}

const callback = provider.callback();
// POST /__standin/fail-next-token: the next code exchange gets a 503, as from a PSC that
// is down between the login and the exchange (the "not answering" page, Playwright walk).
let failNextToken = false;

function handler(req, res) {
  if (req.url === "/__standin/fail-next-token" && req.method === "POST") {
    failNextToken = true;
    return page(res, 200, "ok");
  }
  if (failNextToken && req.url.startsWith("/token")) {
    failNextToken = false;
    return page(res, 503, "unavailable");
  }
  if (req.url === DISCOVERY) req.url = "/.well-known/openid-configuration";
  else if (req.url.startsWith("/.well-known/")) return page(res, 404, "not here");
  if (req.url.startsWith("/interaction/")) {
    return interaction(req, res).catch((err) => page(res, 500, String(err)));
  }
  return callback(req, res);
}

const servers = [env.PSC_ISSUER_PORT, env.PSC_WALLET_PORT].map((port) =>
  http.createServer(handler).listen(Number(port), "127.0.0.1"));
await Promise.all(servers.map((s) => new Promise((ok) => s.on("listening", ok))));
console.log(`READY ${issuer} ${wallet} ${DISCOVERY}`);
const stop = () => { servers.forEach((s) => s.close()); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
