package api

// routes lists every endpoint. Reading this one function tells what the server speaks.
func (srv *Server) routes() {
	authed := routeOpts{auth: true}
	public := routeOpts{}
	send := routeOpts{auth: true, limit: srv.limits.message, keyBy: byUser}
	login := routeOpts{limit: srv.limits.login, keyBy: byAddress}
	register := routeOpts{limit: srv.limits.registration, keyBy: byAddress}
	availability := routeOpts{limit: srv.limits.availability, keyBy: byAddress}
	// Endpoints that check a password take a turn of rc_login per attempt (requirePassword).

	// Operations (health.go).
	srv.mux.HandleFunc("GET /_firebreak/health", srv.health)
	srv.mux.HandleFunc("GET /_firebreak/replication", srv.replication)

	// Discovery (accounts.go).
	srv.handle("GET", "/_matrix/client/versions", srv.versions, public)
	srv.client("GET", "/capabilities", srv.capabilities, authed)

	// Accounts, sessions and devices (accounts.go).
	srv.client("GET", "/login", srv.loginFlows, public)
	srv.client("POST", "/login", srv.login, login)
	srv.client("POST", "/register", srv.register, public) // limited in the handler
	srv.client("GET", "/register/available", srv.registerAvailable, availability)
	srv.handle("GET", "/_synapse/admin/v1/register", srv.adminRegisterNonce, register)
	// The POST spends a nonce, which the GET handed out under the registration limit, and reads
	// nothing else before the MAC is checked: limiting it too would make one registration cost
	// two turns, and tools registering several accounts (firebreak bench) starve themselves.
	srv.handle("POST", "/_synapse/admin/v1/register", srv.adminRegister, public)
	srv.client("POST", "/logout", srv.logout, authed)
	srv.client("POST", "/logout/all", srv.logoutAll, authed)
	srv.client("GET", "/account/whoami", srv.whoami, authed)
	srv.client("POST", "/account/password", srv.changePassword, authed)
	srv.client("POST", "/account/deactivate", srv.deactivate, authed)
	srv.client("GET", "/account/3pid", srv.threePIDs, authed)
	srv.client("GET", "/devices", srv.listDevices, authed)
	srv.client("GET", "/devices/{deviceId}", srv.getDevice, authed)
	srv.client("PUT", "/devices/{deviceId}", srv.renameDevice, authed)
	srv.client("DELETE", "/devices/{deviceId}", srv.deleteDevice, authed)
	srv.client("POST", "/delete_devices", srv.deleteDevices, authed)
	srv.client("GET", "/profile/{userId}", srv.getProfile, public)
	srv.client("GET", "/profile/{userId}/{field}", srv.getProfileField, public)
	srv.client("PUT", "/profile/{userId}/{field}", srv.setProfileField, send) // a member event in every joined room
	srv.client("GET", "/presence/{userId}/status", srv.getPresence, authed)   // not tracked (presence.go)
	srv.client("PUT", "/presence/{userId}/status", srv.setPresence, authed)

	// Push rules (pushrules.go). {$} keeps the whole-ruleset routes from taking sub-paths.
	srv.client("GET", "/pushrules/{$}", srv.pushRules, authed)
	srv.client("GET", "/pushrules/{scope}/{$}", srv.pushRulesScope, authed)
	// Without the spec's trailing slash ServeMux would redirect, with an HTML body; answer
	// the same instead.
	srv.client("GET", "/pushrules", srv.pushRules, authed)
	srv.client("GET", "/pushrules/{scope}", srv.pushRulesScope, authed)
	srv.client("GET", "/pushrules/{scope}/{kind}/{ruleId}", srv.getPushRule, authed)
	srv.client("PUT", "/pushrules/{scope}/{kind}/{ruleId}", srv.putPushRule, authed)
	srv.client("DELETE", "/pushrules/{scope}/{kind}/{ruleId}", srv.deletePushRule, authed)
	srv.client("GET", "/pushrules/{scope}/{kind}/{ruleId}/enabled", srv.getPushRuleEnabled, authed)
	srv.client("PUT", "/pushrules/{scope}/{kind}/{ruleId}/enabled", srv.setPushRuleEnabled, authed)
	srv.client("GET", "/pushrules/{scope}/{kind}/{ruleId}/actions", srv.getPushRuleActions, authed)
	srv.client("PUT", "/pushrules/{scope}/{kind}/{ruleId}/actions", srv.setPushRuleActions, authed)

	// Rooms (rooms.go).
	srv.client("POST", "/createRoom", srv.createRoom, send)
	srv.client("POST", "/join/{roomIdOrAlias}", srv.join, send)
	srv.client("POST", "/knock/{roomIdOrAlias}", srv.knock, send)
	srv.client("POST", "/rooms/{roomId}/join", srv.join, send)
	srv.client("POST", "/rooms/{roomId}/invite", srv.invite, send)
	srv.client("POST", "/rooms/{roomId}/leave", srv.leave, authed)
	srv.client("POST", "/rooms/{roomId}/forget", srv.forget, authed)
	srv.client("POST", "/rooms/{roomId}/kick", srv.kick, send)
	srv.client("POST", "/rooms/{roomId}/ban", srv.ban, send)
	srv.client("POST", "/rooms/{roomId}/unban", srv.unban, send)
	srv.client("GET", "/joined_rooms", srv.joinedRooms, authed)
	srv.client("GET", "/rooms/{roomId}/state", srv.roomState, authed)
	srv.client("GET", "/rooms/{roomId}/state/{eventType}/{stateKey...}", srv.roomStateEvent, authed)
	srv.client("GET", "/rooms/{roomId}/state/{eventType}", srv.roomStateEvent, authed)
	srv.client("GET", "/rooms/{roomId}/members", srv.members, authed)
	srv.client("GET", "/rooms/{roomId}/joined_members", srv.joinedMembers, authed)
	srv.client("GET", "/rooms/{roomId}/event/{eventId}", srv.getEvent, authed)
	srv.client("GET", "/rooms/{roomId}/context/{eventId}", srv.eventContext, authed)
	srv.client("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", srv.sendMessage, send)
	srv.client("PUT", "/rooms/{roomId}/state/{eventType}/{stateKey...}", srv.sendState, send)
	srv.client("PUT", "/rooms/{roomId}/state/{eventType}", srv.sendState, send)
	srv.client("PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", srv.redact, send)
	srv.client("GET", "/directory/room/{alias}", srv.getAlias, public)
	srv.client("PUT", "/directory/room/{alias}", srv.putAlias, authed)
	srv.client("DELETE", "/directory/room/{alias}", srv.deleteAlias, authed)
	srv.client("GET", "/rooms/{roomId}/aliases", srv.roomAliases, authed)

	// The room and user directories (directory.go). /publicRooms needs a token, as in Synapse
	// by default: the list is for this server's users.
	// Both read every listed room: limited per user as sends are.
	srv.client("GET", "/publicRooms", srv.publicRooms, send)
	srv.client("POST", "/publicRooms", srv.publicRooms, send)
	srv.client("GET", "/directory/list/room/{roomId}", srv.getDirectoryVisibility, public)
	srv.client("PUT", "/directory/list/room/{roomId}", srv.setDirectoryVisibility, authed)
	srv.client("POST", "/user_directory/search", srv.searchUsers, send)
	srv.client("GET", "/rooms/{roomId}/messages", srv.messages, authed)
	srv.client("POST", "/search", srv.search, send) // reads every room's history: limited as sends are
	srv.client("POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", srv.receipt, authed)
	srv.client("POST", "/rooms/{roomId}/read_markers", srv.readMarkers, authed)
	srv.client("PUT", "/rooms/{roomId}/typing/{userId}", srv.typing, authed)

	// Relationships between events (relations.go): served under v1 only, as the spec has them.
	srv.clientV1("GET", "/rooms/{roomId}/relations/{eventId}", srv.relations, authed)
	srv.clientV1("GET", "/rooms/{roomId}/relations/{eventId}/{relType}", srv.relations, authed)
	srv.clientV1("GET", "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", srv.relations, authed)
	srv.clientV1("GET", "/rooms/{roomId}/threads", srv.threads, authed)

	// Sync, filters and account data (sync.go).
	srv.client("GET", "/sync", srv.sync, authed)
	srv.client("POST", "/user/{userId}/filter", srv.createFilter, authed)
	srv.client("GET", "/user/{userId}/filter/{filterId}", srv.getFilter, authed)
	srv.client("GET", "/user/{userId}/account_data/{type}", srv.getAccountData, authed)
	// Writes of account data and tags are limited as sends are: every node holds them in memory.
	srv.client("PUT", "/user/{userId}/account_data/{type}", srv.setAccountData, send)
	srv.client("GET", "/user/{userId}/rooms/{roomId}/account_data/{type}", srv.getRoomAccountData, authed)
	srv.client("PUT", "/user/{userId}/rooms/{roomId}/account_data/{type}", srv.setRoomAccountData, send)

	// End-to-end encryption: keys and to-device messages (keys.go).
	srv.client("POST", "/keys/upload", srv.keysUpload, authed)
	srv.client("POST", "/keys/query", srv.keysQuery, authed)
	srv.client("POST", "/keys/claim", srv.keysClaim, authed)
	srv.client("GET", "/keys/changes", srv.keysChanges, authed)
	srv.client("POST", "/keys/device_signing/upload", srv.crossSigningUpload, authed)
	srv.client("POST", "/keys/signatures/upload", srv.signaturesUpload, authed)
	srv.client("PUT", "/sendToDevice/{eventType}/{txnId}", srv.sendToDevice, send)

	// Server-side key backup (keys.go).
	srv.client("POST", "/room_keys/version", srv.createBackup, authed)
	srv.client("GET", "/room_keys/version", srv.getBackup, authed)
	srv.client("GET", "/room_keys/version/{version}", srv.getBackup, authed)
	srv.client("PUT", "/room_keys/version/{version}", srv.updateBackup, authed)
	srv.client("DELETE", "/room_keys/version/{version}", srv.deleteBackup, authed)
	for _, path := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		srv.client("PUT", path, srv.putBackupKeys, authed)
		srv.client("GET", path, srv.getBackupKeys, authed)
		srv.client("DELETE", path, srv.deleteBackupKeys, authed)
	}

	// The content repository (media.go). Uploads keep the v3 path (the spec has no other);
	// files are served to signed-in users only, under /_matrix/client/v1/media.
	upload := routeOpts{auth: true, limit: srv.limits.message, keyBy: byUser, maxBody: srv.Config.MaxUploadSize, bodyTime: uploadTime}
	for _, prefix := range []string{"/_matrix/media/v3", "/_matrix/media/r0"} {
		srv.handle("POST", prefix+"/upload", srv.upload, upload)
		srv.handle("GET", prefix+"/config", srv.mediaConfig, authed)
		srv.handle("GET", prefix+"/download/{serverName}/{mediaId}", srv.legacyMedia, public)
		srv.handle("GET", prefix+"/download/{serverName}/{mediaId}/{fileName}", srv.legacyMedia, public)
		srv.handle("GET", prefix+"/thumbnail/{serverName}/{mediaId}", srv.legacyMedia, public)
	}
	srv.clientV1("GET", "/media/config", srv.mediaConfig, authed)
	srv.clientV1("GET", "/media/download/{serverName}/{mediaId}", srv.download, authed)
	srv.clientV1("GET", "/media/download/{serverName}/{mediaId}/{fileName}", srv.download, authed)
	srv.clientV1("GET", "/media/thumbnail/{serverName}/{mediaId}", srv.thumbnail, authed)

	// Room tags (tags.go).
	srv.client("GET", "/user/{userId}/rooms/{roomId}/tags", srv.getTags, authed)
	srv.client("PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}", srv.putTag, send)
	srv.client("DELETE", "/user/{userId}/rooms/{roomId}/tags/{tag}", srv.deleteTag, send)
}
