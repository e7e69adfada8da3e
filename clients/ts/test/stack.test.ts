// The client against a running stack (make run): signup, verification (the
// key from the local outbox), login, generate, list images. Point it with
// NOUNSAI_API_URL (default http://127.0.0.1:8080), NOUNSAI_CHALLENGE_TOKEN
// and NOUNSAI_OUTBOX_DIR (default ../../.run/outbox); `make client-test`
// sets them.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";

import { basicAuth, createNounsClient, type Schema } from "../src/index.js";

const baseUrl = process.env.NOUNSAI_API_URL ?? "http://127.0.0.1:8080";
const challengeToken = process.env.NOUNSAI_CHALLENGE_TOKEN ?? "dev-challenge-token";
const outbox = process.env.NOUNSAI_OUTBOX_DIR ?? path.resolve("../../.run/outbox");

/** Waits for the verification email to `email` and returns its key. */
async function verificationKey(email: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const names = await readdir(outbox).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.endsWith(".eml"))) {
      const text = (await readFile(path.join(outbox, name), "utf8")).replace(/=\r?\n/g, "");
      if (!text.includes(email)) continue;
      const m = /\/verify\/([0-9a-f]{64,})/.exec(text);
      if (m?.[1]) return m[1];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no verification email to ${email} in ${outbox}`);
}

test("signup, login, generate, list images", async () => {
  const api = createNounsClient({ baseUrl, challengeToken });
  const email = `ts-client-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
  const password = "correct horse battery staple";

  const signup = await api.POST("/users", { body: { email, password, metadata: { from: "ts-client" } } });
  assert.equal(signup.response.status, 200, JSON.stringify(signup.error));
  const userId = signup.data!.id;

  const verified = await api.POST("/users/verify/{verify_key}", {
    params: { path: { verify_key: await verificationKey(email) } },
  });
  assert.equal(verified.response.status, 200, JSON.stringify(verified.error));

  const login = await api.POST("/login", { headers: { Authorization: basicAuth(email, password) } });
  assert.equal(login.response.status, 200, JSON.stringify(login.error));
  assert.equal(login.data!.id, userId);
  api.setToken(login.data!.token);

  const pricing = await api.GET("/pricing");
  assert.ok(pricing.data?.prices, "pricing has prices");

  const generated = await api.POST("/images", {
    body: {
      inference_mode: "Text to Image",
      prompt: "a noun with noggles on a beach",
      samples: 1,
      steps: 10,
      seed: 42,
      aspect_ratio: "256:256",
    },
    parseAs: "arrayBuffer" as const,
  });
  assert.equal(generated.response.status, 200, JSON.stringify(generated.error));
  const imageId = Number(generated.response.headers.get("X-Image-Id"));
  assert.ok(imageId > 0, "X-Image-Id names the stored image");
  // parseAs "arrayBuffer" returns the bytes (openapi-fetch types the
  // image/png body as the document's string).
  const bytes = generated.data as unknown as ArrayBuffer;
  assert.ok(bytes.byteLength > 100, "the image bytes");

  const list = await api.GET("/users/{user_id}/images", {
    params: { path: { user_id: String(userId) }, query: { page: "1", limit: "10" } },
  });
  assert.equal(list.response.status, 200, JSON.stringify(list.error));
  const rows = list.data as Schema<"Image">[];
  assert.ok(rows.some((r) => r.id === imageId), `image ${imageId} is listed`);

  const wrong = await api.GET("/users/{user_id}/credits", { params: { path: { user_id: String(userId + 1) } } });
  // Another user's path is the legacy 400 {"message": ...}.
  assert.equal(wrong.response.status, 400);
  assert.ok(wrong.error && "message" in wrong.error, JSON.stringify(wrong.error));
});
