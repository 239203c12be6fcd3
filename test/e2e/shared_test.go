package e2e

import "testing"

// TestSharedServer runs every scenario that can share one server. Each
// scenario registers its own uniquely named users, so they do not interfere.
func TestSharedServer(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{})
	scenarios := []struct {
		name string
		run  func(*testing.T, *server)
	}{
		{"ThreeUsersChat", testThreeUsersChat},
		{"LongPollSync", testLongPollSync},
		{"HistoryPagination", testHistoryPagination},
		{"ReceiptsAndUnread", testReceiptsAndUnread},
		{"IdempotentSend", testIdempotentSend},
		{"ErrorResponses", testErrorResponses},
		{"Registration", testRegistrationErrors},
		{"EventSizeLimit", testEventSizeLimit},
		{"Versions", testVersions},
		{"Capabilities", testCapabilities},
		{"PushRules", testPushRules},
		{"Filters", testFilters},
		{"Profile", testProfile},
		{"Devices", testDevices},
		{"Deactivate", testDeactivate},
		{"Logout", testLogout},
		{"PasswordChange", testPasswordChange},
		{"RegisterAvailable", testRegisterAvailable},
		{"LeaveForget", testLeaveForget},
		{"KickBanUnban", testKickBanUnban},
		{"Aliases", testAliases},
		{"CreateRoomInvites", testCreateRoomInvites},
		{"RejectedInviteSync", testRejectedInviteSync},
		{"Knocking", testKnocking},
		{"RestrictedJoin", testRestrictedJoin},
		{"ThreadNotifications", testThreadNotifications},
		{"Redact", testRedact},
		{"Context", testContext},
		{"Typing", testTyping},
		{"Tags", testTags},
		{"Presence", testPresence},
		{"DotStateKeys", testDotStateKeys},
		{"Relations", testRelations},
		{"Threads", testThreads},
		{"KeysErrors", testKeysErrors},
		{"Media", testMedia},
		{"Directories", testDirectories},
		{"IgnoredUsers", testIgnoredUsers},
		{"Search", testSearch},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, srv) })
	}
}
