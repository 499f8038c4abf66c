package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok && (u != "probe" || p != "s3cret") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	plain, tlsSrv := httptest.NewServer(handler), httptest.NewTLSServer(handler)
	defer plain.Close()
	defer tlsSrv.Close()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" passes
	}{
		{"http", map[string]string{"HEALTHCHECK_URL": plain.URL + "/healthz"}, ""},
		{"https with a certificate nobody signed", map[string]string{"HEALTHCHECK_URL": tlsSrv.URL + "/healthz"}, ""},
		{"basic auth", map[string]string{"HEALTHCHECK_URL": plain.URL + "/healthz", "HEALTHCHECK_USER": "probe", "HEALTHCHECK_PASSWORD_FILE": pwFile}, ""},
		{"wrong path", map[string]string{"HEALTHCHECK_URL": plain.URL + "/nope"}, "404"},
		{"wrong user", map[string]string{"HEALTHCHECK_URL": plain.URL + "/healthz", "HEALTHCHECK_USER": "x", "HEALTHCHECK_PASSWORD_FILE": pwFile}, "401"},
		{"password file missing", map[string]string{"HEALTHCHECK_URL": plain.URL + "/healthz", "HEALTHCHECK_USER": "probe", "HEALTHCHECK_PASSWORD_FILE": pwFile + "x"}, "HEALTHCHECK_PASSWORD_FILE"},
		{"nothing listens", map[string]string{"HEALTHCHECK_URL": "http://127.0.0.1:1/healthz"}, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := check(context.Background(), func(k string) string { return tc.env[k] })
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want success, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}
