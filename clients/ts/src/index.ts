// The typed client of the Nouns AI API. `paths` and `components` are
// generated from api/openapi.yaml by openapi-typescript (`make client`);
// requests go through openapi-fetch, so paths, parameters, bodies and
// answers are checked by the TypeScript compiler.
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths } from "./schema.js";

/** A row or body schema of the API, by name: `Schema<"Image">`. */
export type Schema<N extends keyof components["schemas"]> = components["schemas"][N];

/** Options of createNounsClient. */
export interface NounsClientOptions {
  /** The proxy (every route) or api-cpu (no GPU routes), e.g. "https://proxy.nounsai.wtf". */
  baseUrl: string;
  /** The public challenge token the frontend ships; sent on every request. */
  challengeToken: string;
  /** A JWT from POST /login; sent raw in Authorization (the legacy form). */
  token?: string;
  /** A fetch implementation (default: the global fetch). */
  fetch?: typeof globalThis.fetch;
}

/** The client: openapi-fetch's GET/POST/... plus the session token. */
export interface NounsClient extends Client<paths> {
  /** Sets (or, with undefined, clears) the JWT sent with each request. */
  setToken(token: string | undefined): void;
}

/** Returns a client that adds the challenge token and the JWT to every request. */
export function createNounsClient(opts: NounsClientOptions): NounsClient {
  let token = opts.token;
  const client = createClient<paths>({ baseUrl: opts.baseUrl, fetch: opts.fetch });
  const auth: Middleware = {
    onRequest({ request }) {
      request.headers.set("challenge-token", opts.challengeToken);
      // /login sets its own Basic credentials.
      if (token && !request.headers.has("Authorization")) {
        request.headers.set("Authorization", token);
      }
      return request;
    },
  };
  client.use(auth);
  return Object.assign(client, {
    setToken(t: string | undefined) {
      token = t;
    },
  });
}

/** The Authorization header value of POST /login. */
export function basicAuth(email: string, password: string): string {
  return "Basic " + Buffer.from(`${email}:${password}`, "utf8").toString("base64");
}
