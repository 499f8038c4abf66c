package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Issue 12, acceptance 1: no command prints a credential. Every cdc
// command runs with a distinctive password (and a distinctive NATS token)
// in every connection string, in three worlds: the servers reachable,
// every port closed, and connection strings that their drivers reject
// (unencoded '/', '#', '@' in the passwords: drivers quote what they
// reject). Everything the process writes (stdout, stderr with the JSON
// log, the exit error) and, while `cdc sink` runs, the /readyz, /healthz
// and /metrics bodies, must hold none of the credentials, in any
// spelling.

// leakSecrets are a test's credentials: each is distinctive, made of
// characters percent-encoding leaves alone, so one strings.Contains per
// secret finds it raw, decoded or re-encoded.
type leakSecrets struct {
	pgPassword, mongoPassword, mongoAWSToken, natsPassword, natsToken string
	// tail follows an unencoded '/' or '#' in the malformed world: the
	// part a parser reads as path or fragment.
	tail string
}

func newLeakSecrets() leakSecrets {
	n := rand.IntN(1e9)
	return leakSecrets{
		pgPassword:    fmt.Sprintf("S3cr3tPw-pg%09d", n),
		mongoPassword: fmt.Sprintf("S3cr3tPw-mg%09d", n),
		mongoAWSToken: fmt.Sprintf("S3cr3tAws-%09d", n),
		natsPassword:  fmt.Sprintf("S3cr3tPw-na%09d", n),
		natsToken:     fmt.Sprintf("S3cr3tTok-%09d", n),
		tail:          fmt.Sprintf("T4il-%09d", n),
	}
}

func (s leakSecrets) all() []string {
	return []string{s.pgPassword, s.mongoPassword, s.mongoAWSToken, s.natsPassword, s.natsToken, s.tail,
		"S3cr3tPw", "S3cr3tTok", "S3cr3tAws", "T4il-"}
}

// leakWorld is one set of connection strings.
type leakWorld struct {
	name      string
	reachable bool
	mongo     string
	pg        string
	nats      string
	// only, when set, limits the world to these commands.
	only []string
}

// withPassword gives uri's user (user when it has none) the password pw,
// replacing any it has.
func withPassword(uri, user, pw string) string {
	scheme, rest, _ := strings.Cut(uri, "://")
	if at := strings.LastIndexByte(rest[:strings.IndexAny(rest+"/", "/")], '@'); at >= 0 {
		if u, _, _ := strings.Cut(rest[:at], ":"); u != "" {
			user = u
		}
		rest = rest[at+1:]
	}
	return scheme + "://" + user + ":" + pw + "@" + rest
}

// withHostPort replaces the host:port of a single-host uri.
func withHostPort(uri, hostport string) string {
	scheme, rest, _ := strings.Cut(uri, "://")
	end := strings.IndexAny(rest+"/", "/?")
	auth := rest[:end]
	user := ""
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		user = auth[:at+1]
	}
	return scheme + "://" + user + hostport + rest[end:]
}

// addQuery appends key=value options to uri.
func addQuery(uri, opts string) string {
	if strings.Contains(uri, "?") {
		return uri + "&" + opts
	}
	if !strings.Contains(strings.SplitN(uri, "://", 2)[1], "/") {
		uri += "/"
	}
	return uri + "?" + opts
}

func TestNoCredentialInAnyOutput(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	sec := newLeakSecrets()
	natsHost := strings.TrimPrefix(n.url(), "nats://")
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t))

	// Mongo fails authentication against the test server (and any
	// server: the password is made up); the short selection timeout makes
	// that quick. Its query also carries the two MongoDB option secrets
	// of the issue.
	mongoOpts := "serverSelectionTimeoutMS=2000&connectTimeoutMS=2000&tlsCertificateKeyFilePassword=" + sec.mongoPassword +
		"&authMechanismProperties=AWS_SESSION_TOKEN:" + sec.mongoAWSToken
	mongoGood := addQuery(withPassword(e.uri, "cdc", sec.mongoPassword), mongoOpts)
	pgGood := addQuery(withPassword(e.pgURL, "cdc", sec.pgPassword), "sslpassword="+sec.pgPassword+"&connect_timeout=2")
	natsList := func(host string) string {
		return "nats://cdc:" + sec.natsPassword + "@" + host + ",nats://" + sec.natsToken + "@" + host
	}
	worlds := []leakWorld{
		{name: "reachable", reachable: true, mongo: mongoGood, pg: pgGood, nats: natsList(natsHost)},
		{name: "closed ports", mongo: withHostPort(mongoGood, closed), pg: withHostPort(pgGood, closed), nats: natsList(closed)},
		{
			name:  "malformed",
			mongo: addQuery("mongodb://cdc:"+sec.mongoPassword+"/"+sec.tail+"@"+closed+"/", mongoOpts),
			pg:    "postgres://cdc:" + sec.pgPassword + "/" + sec.tail + "#x@" + closed + "/db?password=" + sec.pgPassword,
			nats:  "nats://cdc:" + sec.natsPassword + "/" + sec.tail + "@" + closed + ",nats://" + sec.natsToken + "/" + sec.tail + "@" + closed,
		},
		{
			// libpq key=value: the commands that validate postgres.url
			// refuse it (that message must not quote it either); status
			// hands it to pgx.
			name:  "dsn",
			mongo: withHostPort(mongoGood, closed),
			pg: fmt.Sprintf("host=127.0.0.1 port=%s user=cdc password=%s dbname=db sslpassword='%s %s' connect_timeout=2",
				strings.Split(closed, ":")[1], sec.pgPassword, sec.pgPassword, sec.tail),
			nats: natsList(closed),
			only: []string{"status", "status --json", "migrate", "verify --json --connect-timeout 5s", "dlq list", "run"},
		},
	}

	type run struct {
		world, cmd string
		code       int
		out        string
	}
	var (
		mu   sync.Mutex
		runs []run
		wg   sync.WaitGroup
	)
	for _, w := range worlds {
		cfg := e.config("", filepath.Join(e.dir, "data-"+strings.ReplaceAll(w.name, " ", "-")))
		cfg.Mongo.URI, cfg.Postgres.URL, cfg.NATS.URL = w.mongo, w.pg, w.nats
		cfg.Log.Level, cfg.Log.Format = "debug", "json"
		cfg.Snapshot.AllowedTargets = []string{"127.0.0.1"}
		httpAddr := ""
		if w.reachable {
			httpAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		}
		for _, c := range leakCommands() {
			if w.only != nil && !slices.Contains(w.only, strings.Join(c.args, " ")) {
				continue
			}
			cfgC := cfg
			if c.args[0] == "sink" {
				cfgC.HTTP.Addr = httpAddr
			}
			path := e.writeConfig(cfgC)
			wg.Go(func() {
				code, out := e.runForLeak(c, path, w.reachable, httpAddr)
				mu.Lock()
				runs = append(runs, run{world: w.name, cmd: strings.Join(c.args, " "), code: code, out: out})
				mu.Unlock()
			})
		}
	}
	wg.Wait()

	masked := 0
	for _, r := range runs {
		if strings.TrimSpace(r.out) == "" {
			t.Errorf("%s: cdc %s printed nothing (exit %d): the test would not see a leak", r.world, r.cmd, r.code)
		}
		for _, s := range sec.all() {
			if i := strings.Index(r.out, s); i >= 0 {
				lo, hi := max(0, i-300), min(len(r.out), i+len(s)+100)
				t.Errorf("%s: cdc %s (exit %d) printed the credential %q:\n...%s...", r.world, r.cmd, r.code, s, r.out[lo:hi])
			}
		}
		if strings.Contains(r.out, "xxxxx") {
			masked++
		}
		t.Logf("%s: cdc %s: exit %d, %d bytes", r.world, r.cmd, r.code, len(r.out))
	}
	if masked < len(worlds)*3 {
		t.Errorf("only %d outputs show a masked credential: the commands no longer print connection strings, or the test lost its reach", masked)
	}
	// The reachable world did reach NATS and PostgreSQL: status saw them.
	for _, r := range runs {
		if r.world == "reachable" && r.cmd == "status --json" {
			if !strings.Contains(r.out, `"address"`) || strings.Count(r.out, `"reachable": true`)+strings.Count(r.out, `"reachable":true`) < 2 {
				t.Errorf("reachable world: status --json did not reach NATS and PostgreSQL:\n%s", r.out)
			}
		}
	}
}

// leakCommand is one cdc invocation; until, when set, is output after
// which a command that keeps running is stopped with SIGTERM.
type leakCommand struct {
	args  []string
	until string
}

func leakCommands() []leakCommand {
	return []leakCommand{
		{args: []string{"run"}, until: "replicator running"},
		{args: []string{"tail"}, until: "replicator running"},
		{args: []string{"sink"}, until: "replicator running"},
		{args: []string{"status"}},
		{args: []string{"status", "--json"}},
		{args: []string{"verify", "--json", "--connect-timeout", "5s"}},
		{args: []string{"migrate"}},
		{args: []string{"migrate", "status"}},
		{args: []string{"replay", "ids", "--collection", "widgets", "--ids", "000000000000000000000001", "--yes", "127.0.0.1"}},
		{args: []string{"snapshot", "--collections", "widgets", "--yes", "127.0.0.1", "--progress", "log"}},
		{args: []string{"dlq", "list"}},
		{args: []string{"dlq", "show", "1"}},
		{args: []string{"position", "show"}},
	}
}

// runForLeak runs c with the configuration at path and returns its exit
// code and everything it wrote. A command still running after its until
// output (or after 50 s) gets SIGTERM. For `sink` in the reachable world,
// the HTTP endpoint's bodies are appended while it runs.
func (e *env) runForLeak(c leakCommand, path string, reachable bool, httpAddr string) (int, string) {
	cmd := exec.Command(cdcBinary, append(c.args, "-c", path)...)
	cmd.Env = cleanEnv()
	buf := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		e.t.Errorf("start cdc %v: %v", c.args, err)
		return -1, ""
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.After(50 * time.Second)
	var extra strings.Builder
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for stopped := false; ; {
		select {
		case <-done:
			return cmd.ProcessState.ExitCode(), buf.String() + extra.String()
		case <-deadline:
			if !stopped {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				stopped = true
				deadline = time.After(20 * time.Second)
				continue
			}
			_ = cmd.Process.Kill()
			<-done
			e.t.Errorf("cdc %v did not stop on SIGTERM:\n%s", c.args, buf.String())
			return -1, buf.String() + extra.String()
		case <-tick.C:
			if stopped || c.until == "" || !strings.Contains(buf.String(), c.until) {
				continue
			}
			if reachable && c.args[0] == "sink" && httpAddr != "" {
				for _, p := range []string{"/readyz", "/healthz", "/metrics"} {
					extra.WriteString(httpBody("http://" + httpAddr + p))
				}
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			stopped = true
			deadline = time.After(30 * time.Second)
		}
	}
}

// httpBody is the body of GET u, or the error, for the leak grep.
func httpBody(u string) string {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return fmt.Sprintf("\nGET %s: %v\n", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("\nGET %s: %s\n%s\n", u, resp.Status, b)
}
