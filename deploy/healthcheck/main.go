// Command healthcheck is the container image's HEALTHCHECK. The runtime
// image (distroless) has no shell, curl or wget, so this static binary
// asks the replicator's own /healthz and exits 0 on 200, 1 otherwise.
//
// Environment (not CDC_*: the replicator refuses CDC_ variables it does
// not know):
//
//	HEALTHCHECK_URL            default http://127.0.0.1:9464/healthz; use
//	                           https://127.0.0.1:9464/healthz when
//	                           http.web_config_file turns TLS on
//	HEALTHCHECK_USER           basic auth user, when the web configuration
//	HEALTHCHECK_PASSWORD_FILE  has basic_auth_users (a file, not a value)
//
// Over https the server's certificate is not verified: the probe dials
// loopback inside the container, the process itself; what it checks is
// that the process answers, not who it is.
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if err := check(context.Background(), os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// check GETs the health URL within 3 s.
func check(ctx context.Context, getenv func(string) string) error {
	url := getenv("HEALTHCHECK_URL")
	if url == "" {
		url = "http://127.0.0.1:9464/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("HEALTHCHECK_URL: %w", err)
	}
	if user := getenv("HEALTHCHECK_USER"); user != "" {
		b, err := os.ReadFile(getenv("HEALTHCHECK_PASSWORD_FILE"))
		if err != nil {
			return fmt.Errorf("HEALTHCHECK_PASSWORD_FILE: %w", err)
		}
		req.SetBasicAuth(user, strings.TrimRight(string(b), "\r\n"))
	}
	client := &http.Client{Transport: &http.Transport{
		// Loopback to the process itself (see the package comment).
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback self-check
	}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
