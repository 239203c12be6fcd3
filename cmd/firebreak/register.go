package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/firebreak/firebreak/internal/admin"
	"github.com/firebreak/firebreak/internal/config"
	"github.com/firebreak/firebreak/internal/server"
	"golang.org/x/term"
)

const registerHelp = `Usage: firebreak register --user NAME [--password PW] [--admin] [--config FILE] [--url URL]

Creates an account on a running homeserver through shared-secret registration, so the first
user can sign in even with registration off. Run it on the server's machine: it reads the
server's configuration (the same --config as "firebreak serve") for the address and for the
shared secret (registration_shared_secret, or the one the server wrote to its data_dir).

  --user NAME        the account's user name (localpart, e.g. alice)
  --password PW      its password; if omitted it is read from standard input
                     (or from the FIREBREAK_PASSWORD environment variable)
  --admin            make the account a server admin
  --config FILE      the server's configuration (default: the built-in defaults)
  --url URL          the server's base URL (default: http://<listen> from the configuration)
`

func registerCmd(args []string) error {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), registerHelp) }
	configPath := fs.String("config", "", "")
	user := fs.String("user", "", "")
	password := fs.String("password", os.Getenv("FIREBREAK_PASSWORD"), "")
	isAdmin := fs.Bool("admin", false, "")
	url := fs.String("url", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("--user is required")
	}
	cfg := config.Default()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			return err
		}
	}
	secret, err := registrationSecret(cfg)
	if err != nil {
		return err
	}
	if *password == "" {
		if *password, err = readPassword(); err != nil {
			return err
		}
	}
	if *url == "" {
		*url = "http://" + reachable(cfg.Listen)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acct, err := admin.Register(ctx, http.DefaultClient, strings.TrimRight(*url, "/"), secret, *user, *password, *isAdmin)
	if err != nil {
		return err
	}
	fmt.Printf("Created %s (device %s). Log in with any Matrix client at %s.\n", acct.UserID, acct.DeviceID, *url)
	return nil
}

func registrationSecret(cfg config.Config) (string, error) {
	if cfg.RegistrationSharedSecret != "" {
		return cfg.RegistrationSharedSecret, nil
	}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, server.SecretFile))
	if err != nil {
		return "", fmt.Errorf("no registration_shared_secret configured and none found in %s (has the server started?): %w", cfg.DataDir, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// readPassword reads the password from standard input: without echo from a terminal, else its
// first line (a pipe).
func readPassword() (string, error) {
	fmt.Fprint(os.Stderr, "Password: ")
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", fmt.Errorf("no password given: %w", err)
		}
		if len(b) == 0 {
			return "", errors.New("no password given")
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("no password given: %w", err)
		}
		return "", errors.New("no password given")
	}
	return line, nil
}

// reachable is the listen address as a client on this machine reaches it: a server listening
// on every interface (0.0.0.0, [::] or no host) answers on loopback.
func reachable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || (host != "" && !net.ParseIP(host).IsUnspecified()) {
		return listen
	}
	return net.JoinHostPort("127.0.0.1", port)
}
