package deploy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const unitPath = "systemd/cdc.service"

// unit is a parsed systemd unit file: section -> key -> every value in
// order (a key may repeat: Environment=, LoadCredential=, and an empty
// assignment resets a list).
type unit map[string]map[string][]string

// parseUnit reads systemd's unit syntax (systemd.syntax(7)): [Section]
// headers, Key=Value lines, comments starting with # or ;, and lines
// continued with a trailing backslash. Anything else is an error.
func parseUnit(data []byte) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	n, cont := 0, ""
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line = cont + " " + line
			cont = ""
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont = strings.TrimSuffix(line, `\`)
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", n, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: %q is not Key=Value inside a section", n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	if cont != "" {
		return nil, fmt.Errorf("line %d: continuation at end of file", n)
	}
	return u, sc.Err()
}

// last is the effective value of a single-valued key.
func (u unit) last(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// unitRequirements are the directives the unit must carry: the restart
// policy and the hardening of the issue, each with its value. A value of
// "" means the key must be present with an empty value (an empty
// CapabilityBoundingSet= drops every capability).
var unitRequirements = []struct{ section, key, want string }{
	{"Service", "Restart", "on-failure"},
	{"Service", "RestartPreventExitStatus", "2"},
	{"Service", "KillSignal", "SIGTERM"},
	{"Service", "DynamicUser", "yes"},
	{"Service", "StateDirectory", "cdc"},
	{"Service", "ProtectSystem", "strict"},
	{"Service", "ProtectHome", "yes"},
	{"Service", "PrivateTmp", "yes"},
	{"Service", "PrivateDevices", "yes"},
	{"Service", "NoNewPrivileges", "yes"},
	{"Service", "CapabilityBoundingSet", ""},
	{"Service", "AmbientCapabilities", ""},
	{"Service", "ProtectKernelTunables", "yes"},
	{"Service", "ProtectKernelModules", "yes"},
	{"Service", "ProtectControlGroups", "yes"},
	{"Service", "RestrictSUIDSGID", "yes"},
	{"Service", "RestrictNamespaces", "yes"},
	{"Service", "LockPersonality", "yes"},
	{"Service", "MemoryDenyWriteExecute", "yes"},
	{"Service", "SystemCallArchitectures", "native"},
	{"Service", "UMask", "0077"},
	{"Install", "WantedBy", "multi-user.target"},
}

// checkUnit returns every problem of the unit file.
func checkUnit(data []byte) []error {
	u, err := parseUnit(data)
	if err != nil {
		return []error{err}
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, r := range unitRequirements {
		vs, ok := u[r.section][r.key]
		switch {
		case !ok:
			bad("[%s] %s= missing (want %q)", r.section, r.key, r.want)
		case vs[len(vs)-1] != r.want:
			bad("[%s] %s=%s, want %q", r.section, r.key, vs[len(vs)-1], r.want)
		}
	}
	exec := strings.Fields(u.last("Service", "ExecStart"))
	if len(exec) < 2 || !filepath.IsAbs(exec[0]) || exec[1] != "run" {
		bad("[Service] ExecStart=%v: want an absolute path to cdc and the run command", exec)
	}
	// Every *_FILE variable names a credential the unit loads; no secret
	// is set inline.
	creds := map[string]bool{}
	for _, lc := range u["Service"]["LoadCredential"] {
		id, _, _ := strings.Cut(lc, ":")
		creds[id] = true
	}
	var env []string
	for _, e := range u["Service"]["Environment"] {
		env = append(env, strings.Fields(e)...)
	}
	files := 0
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasSuffix(k, "_FILE"):
			files++
			id, ok := strings.CutPrefix(v, "%d/")
			if !ok || !creds[id] {
				bad("Environment=%s: a secret file must be %%d/<id> of a LoadCredential=<id>:...", kv)
			}
		case slices.Contains([]string{"CDC_MONGO_URI", "CDC_PG_URL", "CDC_NATS_URL", "CDC_POSTGRES__URL", "CDC_MONGO__URI",
			"CDC_NATS__AUTH__PASSWORD", "CDC_NATS__AUTH__TOKEN"}, k):
			bad("Environment=%s: a secret inline; use LoadCredential= and the _FILE variable", k)
		}
	}
	if files == 0 {
		bad("no *_FILE variable: the credentials must come from LoadCredential=")
	}
	if !slices.Contains(env, "CDC_DATA_DIR=%S/cdc") {
		bad("CDC_DATA_DIR must be the state directory (%%S/cdc): the embedded JetStream store must survive restarts under ProtectSystem=strict")
	}
	return errs
}

// TestSystemdUnit: the unit has the restart policy and hardening
// directives, and systemd itself accepts it where systemd-analyze exists.
func TestSystemdUnit(t *testing.T) {
	data := read(t, unitPath)
	for _, err := range checkUnit(data) {
		t.Errorf("%s: %v", unitPath, err)
	}
	// The checker catches what it exists for.
	for _, tc := range []struct{ name, old, new, want string }{
		{"weaker ProtectSystem", "ProtectSystem=strict", "ProtectSystem=full", "ProtectSystem=full"},
		{"capabilities kept", "CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_ADMIN\n", "CapabilityBoundingSet=CAP_NET_ADMIN"},
		{"no restart", "Restart=on-failure", "Restart=no", "Restart=no"},
		{"inline secret", "Environment=CDC_MONGO__URI_FILE=%d/mongo-uri", "Environment=CDC_MONGO__URI=mongodb://u:p@h", "a secret inline"},
		{"credential not loaded", "LoadCredential=mongo-uri:", "LoadCredential=mongo:", "%d/<id> of a LoadCredential"},
		{"DynamicUser missing", "DynamicUser=yes\n", "", "DynamicUser= missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := string(data)
			if !strings.Contains(s, tc.old) {
				t.Fatalf("the unit no longer contains %q: update this test", tc.old)
			}
			errs := checkUnit([]byte(strings.Replace(s, tc.old, tc.new, 1)))
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
				t.Errorf("want an error containing %q, got %v", tc.want, errs)
			}
		})
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		// Not silent: the table above is the check on this machine.
		t.Logf("systemd-analyze not found (%v): the unit was checked against the directive table only", err)
		return
	}
	// verify insists that ExecStart's binary exists: point it at a stub.
	dir := t.TempDir()
	stub := filepath.Join(dir, "cdc")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unitFile := filepath.Join(dir, "cdc.service")
	if err := os.WriteFile(unitFile, bytes.ReplaceAll(data, []byte("/usr/local/bin/cdc"), []byte(stub)), 0o644); err != nil {
		t.Fatal(err)
	}
	// systemd-analyze verify exits 0 on directives it ignores; only
	// silence means the unit is as written.
	out, err := exec.Command(analyze, "verify", unitFile).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
	}
	// The hardening as systemd scores it (0 best, 10 worst): at most 2.0.
	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", unitFile).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 or an error: %v\n%s", err, out)
	}
}
