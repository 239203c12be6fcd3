// What the scenarios share: checks, waiting for the SDK, and clients registered and started
// the way Element starts them.
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("warn");
console.debug = () => {}; // the Rust crypto traces every step at debug level

export const baseUrl = process.argv[2];
const run = Math.random().toString(36).slice(2, 8);
export const password = `pw-${run}-long enough`;
const clients = [];

export function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

// until polls ok() every 50 ms for up to 15 s: the SDK applies what a sync brings in its own time.
export async function until(what, ok) {
  for (let i = 0; i < 300; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

// start starts a client from a login or registration response, with Element's Rust crypto
// when asked, and waits for its first sync.
async function start(r, { crypto = false } = {}) {
  const client = sdk.createClient({ baseUrl, accessToken: r.access_token, userId: r.user_id, deviceId: r.device_id });
  if (crypto) await client.initRustCrypto({ useIndexedDB: false });
  clients.push(client);
  const prepared = new Promise((res) => client.once(sdk.ClientEvent.Sync, res));
  await client.startClient({ initialSyncLimit: 5, lazyLoadMembers: true });
  check((await prepared) === "PREPARED", `${client.getUserId()} finished its first sync`);
  return client;
}

export async function register(name, opts) {
  return start(await sdk.createClient({ baseUrl }).registerRequest({
    username: `${name}${run}`, password, auth: { type: "m.login.dummy" },
  }), opts);
}

export async function login(userId, opts) {
  return start(await sdk.createClient({ baseUrl }).loginRequest({
    type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password,
  }), opts);
}

// scenario runs body, prints "all checks passed" when it returns, stops every client and exits.
export async function scenario(body) {
  try {
    await body();
    console.log("all checks passed");
  } catch (err) {
    console.error(err);
    process.exitCode = 1;
  } finally {
    for (const c of clients) c.stopClient();
  }
  process.exit(process.exitCode ?? 0);
}
