package deploy_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dockerfilePath = "Dockerfile"

var (
	pinnedImage = regexp.MustCompile(`^[a-z0-9./_-]+(:[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64}$`)
	syntaxLine  = regexp.MustCompile(`^# syntax=(\S+)$`)
)

// checkDockerfile returns every problem of the image's Dockerfile: a
// base image (or the syntax frontend, itself an image) not pinned by
// digest, no HEALTHCHECK, a root user, a comment that says the HTTP
// endpoints are still to come.
func checkDockerfile(data string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	stages := map[string]bool{}
	froms, health, user := 0, false, ""
	lines := strings.Split(data, "\n")
	for i, line := range lines {
		n := i + 1
		if m := syntaxLine.FindStringSubmatch(line); m != nil && !pinnedImage.MatchString(m[1]) {
			bad("line %d: syntax frontend %s is not pinned by @sha256:", n, m[1])
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") && strings.Contains(strings.ToLower(line), "planned") {
			bad("line %d: stale comment %q: the HTTP endpoints exist", n, strings.TrimSpace(line))
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms++
			img := ""
			for _, w := range f[1:] {
				if !strings.HasPrefix(w, "--") {
					img = w
					break
				}
			}
			if !stages[img] && !pinnedImage.MatchString(img) {
				bad("line %d: FROM %s is not pinned by @sha256:<digest> (and is no earlier stage)", n, img)
			}
			if len(f) >= 4 && strings.EqualFold(f[len(f)-2], "AS") {
				stages[f[len(f)-1]] = true
			}
			health, user = false, "" // per stage: the last one is the image
		case "HEALTHCHECK":
			health = len(f) > 1 && !strings.EqualFold(f[1], "NONE")
		case "USER":
			user = f[1]
		}
	}
	if froms == 0 {
		bad("no FROM")
	}
	if !health {
		bad("the final stage has no HEALTHCHECK")
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		bad("the final stage runs as %q: set a non-root USER", user)
	}
	return errs
}

// TestDockerfile: base images pinned by digest, a HEALTHCHECK, non-root,
// no stale comments; the checker catches each mistake.
func TestDockerfile(t *testing.T) {
	data := string(read(t, dockerfilePath))
	for _, err := range checkDockerfile(data) {
		t.Errorf("%s: %v", dockerfilePath, err)
	}
	digest := regexp.MustCompile(`@sha256:[0-9a-f]{64}`)
	for _, tc := range []struct{ name, old, new, want string }{
		{"tag only", "FROM golang:1.26.8-bookworm@", "FROM golang:1.26.8-bookworm AS x\nFROM golang:1.26.8-bookworm@", "FROM golang:1.26.8-bookworm is not pinned"},
		{"short digest", "static-debian12:nonroot@sha256:", "static-debian12:nonroot@sha256:abc AS y\nFROM gcr.io/distroless/static-debian12:nonroot@sha256:", "is not pinned"},
		{"no healthcheck", "HEALTHCHECK --interval", "# HEALTHCHECK --interval", "no HEALTHCHECK"},
		{"root", "USER 65532:65532", "USER root", `runs as "root"`},
		{"stale comment", "# /metrics, /healthz, /readyz on http.addr.", "# /metrics, /healthz, /readyz (planned).", "stale comment"},
		{"unpinned frontend", "# syntax=docker/dockerfile:1.7@", "# syntax=docker/dockerfile:1\n#", "syntax frontend docker/dockerfile:1 is not pinned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(data, tc.old) {
				t.Fatalf("the Dockerfile no longer contains %q: update this test", tc.old)
			}
			errs := checkDockerfile(strings.Replace(data, tc.old, tc.new, 1))
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
				t.Errorf("want an error containing %q, got %v", tc.want, errs)
			}
		})
	}
	if n := len(digest.FindAllString(data, -1)); n < 3 {
		t.Errorf("want the two base images and the syntax frontend pinned, found %d digests", n)
	}
}
