package checkpoint

import (
	"fmt"
	"math/rand/v2"
	"os"
)

// NewOwner returns a tailer identity "<instance>:<pid>:<nonce>": instance
// (the host name when empty) says where it runs, the pid and a random nonce
// make every process distinct, so two processes with one configured name
// still fence each other.
func NewOwner(instance string) string {
	if instance == "" {
		instance = hostname()
	}
	return fmt.Sprintf("%s:%d:%04x", instance, os.Getpid(), rand.Uint32N(1<<16))
}

// HandoffOwner is the Owner a snapshot's hand-off writes,
// "snapshot:<host>:<pid>": `cdc status` and the tailer's logs name the
// snapshot that moved the checkpoint.
func HandoffOwner() string { return fmt.Sprintf("snapshot:%s:%d", hostname(), os.Getpid()) }

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown-host"
	}
	return h
}
