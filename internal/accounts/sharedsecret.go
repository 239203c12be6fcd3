package accounts

import (
	"crypto/hmac"
	"crypto/sha1"
	"strings"
)

// RegistrationMAC is the MAC of Synapse's shared-secret registration: HMAC-SHA1 keyed with the
// secret over nonce, user name, password and admin flag separated by NUL bytes. Admin tools
// and test suites written for Synapse compute the same. A user type, when sent, is signed too.
func RegistrationMAC(secret, nonce, username, password string, admin bool, userType string) []byte {
	flag := "notadmin"
	if admin {
		flag = "admin"
	}
	fields := []string{nonce, username, password, flag}
	if userType != "" {
		fields = append(fields, userType)
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(strings.Join(fields, "\x00")))
	return mac.Sum(nil)
}
