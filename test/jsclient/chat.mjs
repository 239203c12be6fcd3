// Drives a Firebreak server the way Element does, through matrix-js-sdk: register, sync,
// create a room with an invite, join, talk, back-fill history on a fresh login, redact.
// Usage: node chat.mjs BASE_URL. Prints "all checks passed" and exits 0, or exits 1.
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("warn");
const baseUrl = process.argv[2];
const run = Math.random().toString(36).slice(2, 8);
const password = `pw-${run}-long enough`;
const clients = [];

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

// until polls ok() every 50 ms for up to 15 s: the SDK applies what a sync brings in its own time.
async function until(what, ok) {
  for (let i = 0; i < 300; i++) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

async function start(client) {
  clients.push(client);
  const prepared = new Promise((res) => client.once(sdk.ClientEvent.Sync, res));
  await client.startClient({ initialSyncLimit: 5, lazyLoadMembers: true });
  check((await prepared) === "PREPARED", `${client.getUserId()} finished its first sync`);
  return client;
}

async function register(name) {
  const r = await sdk.createClient({ baseUrl }).registerRequest({
    username: `${name}${run}`, password, auth: { type: "m.login.dummy" },
  });
  return start(sdk.createClient({ baseUrl, accessToken: r.access_token, userId: r.user_id, deviceId: r.device_id }));
}

async function login(userId) {
  const r = await sdk.createClient({ baseUrl }).loginRequest({
    type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password,
  });
  return start(sdk.createClient({ baseUrl, accessToken: r.access_token, userId: r.user_id, deviceId: r.device_id }));
}

const bodies = (room) => room.getLiveTimeline().getEvents()
  .filter((e) => e.getType() === "m.room.message" && !e.isRedacted()).map((e) => e.getContent().body);

try {
  const alice = await register("alice");
  const bob = await register("bob");

  const { room_id: roomId } = await alice.createRoom({ preset: "private_chat", name: "js room", invite: [bob.getUserId()] });
  await until("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
  await bob.joinRoom(roomId);
  await until("alice sees bob join", () => alice.getRoom(roomId)?.getJoinedMemberCount() === 2);
  check(bob.getRoom(roomId).name === "js room", "bob sees the room's name");

  const sent = [];
  for (let i = 1; i <= 30; i++) {
    const text = `message ${i}`;
    await alice.sendTextMessage(roomId, text);
    sent.push(text);
  }
  await until("bob has all 30 messages live", () => bodies(bob.getRoom(roomId)).length >= 30);
  check(JSON.stringify(bodies(bob.getRoom(roomId)).slice(-30)) === JSON.stringify(sent), "bob got every message once, in order");

  // A fresh login starts with the newest 5 and pages back through /messages.
  const bob2 = await login(bob.getUserId());
  const room2 = bob2.getRoom(roomId);
  check(bodies(room2).length <= 5, "a fresh login's first sync is limited");
  while (bodies(room2).length < 30 && (await bob2.scrollback(room2, 10)).oldState.paginationToken) { /* page back */ }
  check(JSON.stringify(bodies(room2).slice(-30)) === JSON.stringify(sent), "scrollback recovers the whole history in order");

  const victim = alice.getRoom(roomId).getLiveTimeline().getEvents().findLast((e) => e.getContent().body === "message 30");
  await alice.redactEvent(roomId, victim.getId());
  await until("bob sees the redaction", () => bob.getRoom(roomId).findEventById(victim.getId())?.isRedacted());
  check(!bodies(bob.getRoom(roomId)).includes("message 30"), "the redacted message lost its content");

  console.log("all checks passed");
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  for (const c of clients) c.stopClient();
}
process.exit(process.exitCode ?? 0);
