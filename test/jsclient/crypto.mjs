// Encrypted messaging the way Element does it: two matrix-js-sdk clients with the SDK's Rust
// crypto (matrix-sdk-crypto-wasm) upload keys, set up Olm sessions through key claims and
// to-device messages, share a Megolm room key, read each other's messages in an encrypted
// room, and back the room keys up on the server. Usage: node crypto.mjs BASE_URL.
import { check, register, scenario, until } from "./lib.mjs";

// lastEncrypted is the newest event of the room that came encrypted.
const lastEncrypted = (client, roomId) => client.getRoom(roomId)?.getLiveTimeline().getEvents()
  .findLast((e) => e.getWireType() === "m.room.encrypted");

await scenario(async () => {
  const alice = await register("alice", { crypto: true });
  const bob = await register("bob", { crypto: true });
  const { room_id: roomId } = await alice.createRoom({
    preset: "private_chat", invite: [bob.getUserId()],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  await until("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
  await bob.joinRoom(roomId);
  await until("alice sees bob join", () => alice.getRoom(roomId)?.getJoinedMemberCount() === 2);
  check(await alice.getCrypto().isEncryptionEnabledInRoom(roomId), "the room is encrypted");

  await alice.sendTextMessage(roomId, "a secret for bob");
  check(lastEncrypted(alice, roomId)?.getWireContent().ciphertext, "alice's client sent ciphertext");
  await until("bob's client decrypts it", () => {
    const ev = lastEncrypted(bob, roomId);
    return ev && !ev.isDecryptionFailure() && ev.getContent().body === "a secret for bob";
  });
  await bob.sendTextMessage(roomId, "and one back");
  await until("alice's client decrypts the reply", () => lastEncrypted(alice, roomId)?.getContent().body === "and one back");
  check(true, "both clients read each other's encrypted messages");

  // Element sets up a key backup: a new version, then the room keys uploaded to it.
  await alice.getCrypto().resetKeyBackup();
  await until("alice's client backs her room keys up", async () => (await alice.getKeyBackupVersion())?.count >= 1);
  check((await alice.getCrypto().getActiveSessionBackupVersion()) !== null, "alice's client uses the new backup");
});
