package accounts

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
)

// RegistrationMAC is the MAC of Synapse's shared-secret registration: HMAC-SHA1 keyed with the
// secret over nonce, user name, password and admin flag separated by NUL bytes. Admin tools
// and test suites written for Synapse compute the same.
func RegistrationMAC(secret, nonce, username, password string, admin bool) string {
	mac := hmac.New(sha1.New, []byte(secret))
	flag := "notadmin"
	if admin {
		flag = "admin"
	}
	for i, part := range []string{nonce, username, password, flag} {
		if i > 0 {
			mac.Write([]byte{0})
		}
		mac.Write([]byte(part))
	}
	return hex.EncodeToString(mac.Sum(nil))
}
