package state

import "testing"

func TestTextSafe(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a\x00b", `a\x00b`},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"both\x00\xfe", `both\x00` + "\uFFFD"},
		{"ünïcode ok", "ünïcode ok"},
	} {
		if got := textSafe(c.in); got != c.want {
			t.Errorf("textSafe(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
