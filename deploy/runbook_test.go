package deploy_test

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The runbook's procedures must be commands that exist: every `cdc ...`
// in docs/runbook.md (code blocks and inline code) names a subcommand of
// the binary built from ./cmd/cdc, and every flag it uses is one that
// subcommand's --help lists.

// cdcHelp builds cdc once and answers `cdc <path> --help`, cached.
type cdcHelp struct {
	bin   string
	mu    sync.Mutex
	cache map[string]string
}

func newCDCHelp(t *testing.T) *cdcHelp {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cdc")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/cdc").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cdc: %v\n%s", err, out)
	}
	return &cdcHelp{bin: bin, cache: map[string]string{}}
}

func (h *cdcHelp) help(path []string) (string, error) {
	key := strings.Join(path, " ")
	h.mu.Lock()
	defer h.mu.Unlock()
	if out, ok := h.cache[key]; ok {
		return out, nil
	}
	out, err := exec.Command(h.bin, append(append([]string{}, path...), "--help")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("cdc %s --help: %v\n%s", key, err, out)
	}
	h.cache[key] = string(out)
	return string(out), nil
}

// subcommands lists the "Available Commands:" of a help text.
func subcommands(help string) map[string]bool {
	out := map[string]bool{}
	in := false
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Available Commands:"):
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in:
			if f := strings.Fields(line); len(f) > 0 {
				out[f[0]] = true
			}
		}
	}
	return out
}

// checkInvocation checks one `cdc ...` command line.
func (h *cdcHelp) checkInvocation(line string) error {
	tokens := strings.Fields(line)
	if len(tokens) == 0 || tokens[0] != "cdc" {
		return fmt.Errorf("%q does not start with cdc", line)
	}
	var path []string
	help, err := h.help(nil)
	if err != nil {
		return err
	}
	for _, tok := range tokens[1:] {
		if !subcommands(help)[tok] {
			break
		}
		path = append(path, tok)
		if help, err = h.help(path); err != nil {
			return err
		}
	}
	if len(path) == 0 {
		return fmt.Errorf("%q: %q is not a cdc command", line, tokens[1])
	}
	// A command with subcommands runs by itself only when its usage says
	// so ("cdc migrate [flags]" beside "cdc migrate [command]").
	if len(subcommands(help)) > 0 && !strings.Contains(help, "cdc "+strings.Join(path, " ")+" [flags]") {
		return fmt.Errorf("%q: cdc %s needs a subcommand", line, strings.Join(path, " "))
	}
	for _, tok := range tokens[1+len(path):] {
		if !strings.HasPrefix(tok, "-") || tok == "-" {
			continue
		}
		name, _, _ := strings.Cut(tok, "=")
		if !regexp.MustCompile(`(^|[\s,])` + regexp.QuoteMeta(name) + `\b`).MatchString(help) {
			return fmt.Errorf("%q: cdc %s has no flag %s", line, strings.Join(path, " "), name)
		}
	}
	return nil
}

var (
	inlineCDC = regexp.MustCompile("`(cdc [^`]+)`")
	envPrefix = regexp.MustCompile(`^([A-Z_][A-Z0-9_]*=\S*\s+)+`)
)

// runbookInvocations returns every `cdc ...` command of a Markdown text
// with its line number: in sh code blocks each command of a line (split at
// &&, ||, | and ;, comments and environment assignments dropped), and
// inline code spans that start with "cdc ".
func runbookInvocations(doc string) (out []struct {
	line int
	cmd  string
}) {
	add := func(n int, cmd string) {
		cmd = strings.Join(strings.Fields(cmd), " ")
		out = append(out, struct {
			line int
			cmd  string
		}{n, cmd})
	}
	lines := strings.Split(doc, "\n")
	inCode := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			inCode = !inCode
			continue
		}
		if !inCode {
			continue
		}
		code, _, _ := strings.Cut(l, " #")
		if strings.HasPrefix(strings.TrimSpace(code), "#") {
			continue
		}
		for _, part := range regexp.MustCompile(`&&|\|\||\||;`).Split(code, -1) {
			part = envPrefix.ReplaceAllString(strings.TrimSpace(part), "")
			if strings.HasPrefix(part, "cdc ") {
				add(i+1, part)
			}
		}
	}
	// Inline spans, outside code blocks (they may wrap a line).
	var prose strings.Builder
	inCode = false
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			inCode = !inCode
			prose.WriteString("\n")
			continue
		}
		if inCode {
			prose.WriteString("\n")
			continue
		}
		prose.WriteString(l + "\n")
	}
	text := prose.String()
	for _, m := range inlineCDC.FindAllStringSubmatchIndex(text, -1) {
		add(strings.Count(text[:m[0]], "\n")+1, text[m[2]:m[3]])
	}
	return out
}

// TestRunbookCommandsExist: every cdc command in the runbook exists with
// the flags it is given.
func TestRunbookCommandsExist(t *testing.T) {
	doc := string(read(t, runbookPath))
	inv := runbookInvocations(doc)
	if len(inv) < 40 {
		t.Fatalf("found only %d cdc commands in %s: the parser is broken", len(inv), runbookPath)
	}
	h := newCDCHelp(t)
	for _, c := range inv {
		if err := h.checkInvocation(c.cmd); err != nil {
			t.Errorf("%s:%d: %v", runbookPath, c.line, err)
		}
	}
	// The checker catches what it exists for.
	for _, tc := range []struct{ cmd, want string }{
		{"cdc replay oplog --since 2026-01-01T00:00:00Z", "has no flag --since"},
		{"cdc dlq purge --all", `needs a subcommand`},
		{"cdc rewind", "is not a cdc command"},
		{"cdc replay", "needs a subcommand"},
	} {
		if err := h.checkInvocation(tc.cmd); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want an error containing %q, got %v", tc.cmd, tc.want, err)
		}
	}
}
