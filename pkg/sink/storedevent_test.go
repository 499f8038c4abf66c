package sink

import (
	"encoding/hex"
	"encoding/json"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestHasEscapedNUL(t *testing.T) {
	for _, c := range []struct {
		js   string
		want bool
	}{
		{`{"a":"x"}`, false},
		{`{"a":"\u0000"}`, true},
		{`{"a":"ab\u0000cd"}`, true},
		{`{"a":"\\u0000"}`, false},   // an escaped backslash, then the text u0000
		{`{"a":"\\\u0000"}`, true},   // an escaped backslash, then a NUL
		{`{"a":"\\\\u0000"}`, false}, // two escaped backslashes, then text
		{`{"a":"\u00001"}`, true},
	} {
		if got := hasEscapedNUL([]byte(c.js)); got != c.want {
			t.Errorf("hasEscapedNUL(%s) = %v, want %v", c.js, got, c.want)
		}
	}
}

// A dead-lettered envelope is kept as Extended JSON unless jsonb cannot
// hold it: with a NUL character it is its exact BSON, as hex.
func TestStoredEvent(t *testing.T) {
	plain, _ := bson.Marshal(bson.D{{Key: "a", Value: "x"}})
	if got := storedEvent(plain); string(got) != `{"a":"x"}` {
		t.Fatalf("plain envelope stored as %s", got)
	}
	nul, _ := bson.Marshal(bson.D{{Key: "a", Value: "x\x00y"}})
	var kept struct {
		BSON string `json:"bson_hex"`
	}
	if err := json.Unmarshal(storedEvent(nul), &kept); err != nil || kept.BSON != hex.EncodeToString(nul) {
		t.Fatalf("NUL envelope stored as %s (%v), want its BSON as hex", storedEvent(nul), err)
	}
	var undecodable struct {
		Hex string `json:"undecodable_hex"`
	}
	if err := json.Unmarshal(storedEvent([]byte{1, 2, 3}), &undecodable); err != nil || undecodable.Hex != "010203" {
		t.Fatalf("undecodable envelope stored as %s", storedEvent([]byte{1, 2, 3}))
	}
}
