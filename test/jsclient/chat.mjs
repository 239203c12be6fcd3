// Drives a Firebreak server the way Element does, through matrix-js-sdk: register, sync,
// create a room with an invite, join, talk, back-fill history on a fresh login, redact, and
// share a file.
// Usage: node chat.mjs BASE_URL. Prints "all checks passed" and exits 0, or exits 1.
import { check, login, register, scenario, until } from "./lib.mjs";

const bodies = (room) => room.getLiveTimeline().getEvents()
  .filter((e) => e.getType() === "m.room.message" && !e.isRedacted()).map((e) => e.getContent().body);

await scenario(async () => {
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

  // An attachment: uploaded by one client, fetched by the other through the authenticated
  // media API, as Element fetches images.
  const { content_uri: mxc } = await alice.uploadContent(new Blob(["a note"], { type: "text/plain" }), { name: "note.txt" });
  const url = bob.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
  const res = await fetch(url, { headers: { Authorization: `Bearer ${bob.getAccessToken()}` } });
  check(res.ok && (await res.text()) === "a note", "bob downloads alice's upload through the authenticated media API");
});
