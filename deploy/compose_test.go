package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of docker-compose.yml this test reads.
type composeFile struct {
	Secrets  map[string]struct{ File string } `yaml:"secrets"`
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Secrets     []string          `yaml:"secrets"`
		Ports       []string          `yaml:"ports"`
		Profiles    []string          `yaml:"profiles"`
	} `yaml:"services"`
}

// TestCompose: the compose stack binds only to loopback, takes every
// credential from a Docker secret that deploy/compose-secrets.sh creates,
// runs the replicator as cdc_sink and the migration as cdc_owner, and
// runs MongoDB and NATS with authentication. (No Docker on the CI
// machine: this reads the file; `docker compose config` is the check
// where Compose exists.)
func TestCompose(t *testing.T) {
	var f composeFile
	if err := yaml.Unmarshal(read(t, "../docker-compose.yml"), &f); err != nil {
		t.Fatal(err)
	}
	for name, s := range f.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s: port %q is published on every interface; bind it to 127.0.0.1", name, p)
			}
		}
		for k, v := range s.Environment {
			if strings.HasSuffix(k, "_FILE") {
				sec, ok := strings.CutPrefix(v, "/run/secrets/")
				if !ok || !slices.Contains(s.Secrets, sec) {
					t.Errorf("service %s: %s=%s is not a secret the service mounts (%v)", name, k, v, s.Secrets)
				}
				continue
			}
			up := strings.ToUpper(k)
			if strings.Contains(up, "PASSWORD") || strings.Contains(up, "TOKEN") ||
				(strings.HasPrefix(k, "CDC_") && (strings.Contains(up, "URL") || strings.Contains(up, "URI")) && strings.Contains(v, "@")) {
				t.Errorf("service %s: %s is set inline; use a Docker secret and the _FILE variable", name, k)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := f.Secrets[sec]; !ok {
				t.Errorf("service %s: secret %s is not declared", name, sec)
			}
		}
	}
	env := func(svc, k string) string { return f.Services[svc].Environment[k] }
	if got := env("replicator", "CDC_POSTGRES__URL_FILE"); got != "/run/secrets/pg_sink_url" {
		t.Errorf("the replicator must connect as cdc_sink (pg_sink_url), got %q", got)
	}
	if got := env("migrate", "CDC_POSTGRES__URL_FILE"); got != "/run/secrets/pg_owner_url" {
		t.Errorf("migrate must connect as cdc_owner (pg_owner_url), got %q", got)
	}
	if env("mongo", "MONGO_INITDB_ROOT_PASSWORD_FILE") == "" || !slices.Contains(f.Services["mongo"].Command, "--keyFile") {
		t.Errorf("mongo must run with authentication (MONGO_INITDB_ROOT_PASSWORD_FILE, --keyFile)")
	}
	if env("replicator", "CDC_NATS__AUTH__PASSWORD_FILE") == "" {
		t.Errorf("the replicator must authenticate to NATS")
	}
	if conf := string(read(t, "nats/nats.conf")); !strings.Contains(conf, "authorization") || !strings.Contains(conf, "$CDC_NATS_PASSWORD") {
		t.Errorf("deploy/nats/nats.conf must require a password")
	}

	// The secrets script creates exactly the declared secrets, in the
	// declared files.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "deploy", "compose-secrets.sh")
	if err := os.WriteFile(script, read(t, "compose-secrets.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", script).CombinedOutput(); err != nil {
		t.Fatalf("compose-secrets.sh: %v\n%s", err, out)
	}
	var made, declared []string
	entries, err := os.ReadDir(filepath.Join(root, "data", "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		made = append(made, "./data/secrets/"+e.Name())
		if b, _ := os.ReadFile(filepath.Join(root, "data", "secrets", e.Name())); len(b) == 0 {
			t.Errorf("secret %s is empty", e.Name())
		}
	}
	for _, s := range f.Secrets {
		declared = append(declared, s.File)
	}
	sort.Strings(made)
	sort.Strings(declared)
	if !slices.Equal(made, declared) {
		t.Errorf("compose-secrets.sh makes %v, docker-compose.yml declares %v", made, declared)
	}
	// The Postgres URLs name the two roles.
	for file, user := range map[string]string{"pg_owner_url": "cdc_owner", "pg_sink_url": "cdc_sink"} {
		b, _ := os.ReadFile(filepath.Join(root, "data", "secrets", file))
		if !strings.HasPrefix(string(b), "postgres://"+user+":") {
			t.Errorf("%s does not connect as %s", file, user)
		}
	}
}
