package transform_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestJSONBAndTextRefuseWhatPostgresCannotStore: a jsonb value whose
// strings or keys hold invalid UTF-8 is rejected naming the path inside
// the value, as a text column rejects it, never stored with U+FFFD in
// place of the bytes; a NUL is rejected in both (Postgres refuses it);
// the six characters of a literal \u0000 are an ordinary string in both.
func TestJSONBAndTextRefuseWhatPostgresCannotStore(t *testing.T) {
	m := mustParse(t, `{version: 1, collection: c, table: t, columns: [
		{column: meta, field: meta, type: jsonb},
		{column: note, field: note, type: text}]}`)
	for _, tc := range []struct {
		name string
		doc  bson.D
		// Accepted: the stored jsonb and text (note "" when absent).
		wantJSON, wantNote string
		// Rejected: the field path and a part of the reason.
		wantField, wantReason string
	}{
		{name: "unicode kept", doc: bson.D{{Key: "meta", Value: bson.D{{Key: "ключ", Value: "Ünï — 日本語 👩🏽‍💻"}, {Key: "a", Value: bson.A{int32(1), "x"}}}}},
			wantJSON: `{"ключ":"Ünï — 日本語 👩🏽‍💻","a":[1,"x"]}`},
		{name: `literal \u0000 in jsonb`, doc: bson.D{{Key: "meta", Value: bson.D{{Key: "s", Value: `lit\u0000`}}}},
			wantJSON: `{"s":"lit\\u0000"}`},
		{name: `literal \u0000 in a jsonb key`, doc: bson.D{{Key: "meta", Value: bson.D{{Key: `k\u0000`, Value: int32(1)}}}},
			wantJSON: `{"k\\u0000":1}`},
		{name: `literal \u0000 in text`, doc: bson.D{{Key: "meta", Value: int32(1)}, {Key: "note", Value: `lit\u0000`}},
			wantJSON: `1`, wantNote: `lit\u0000`},

		{name: "invalid UTF-8 in a nested string", doc: bson.D{{Key: "meta", Value: bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: "bad \xff\xfe"}}}}}},
			wantField: "meta.a.b", wantReason: "string is not valid UTF-8"},
		{name: "invalid UTF-8 in a key", doc: bson.D{{Key: "meta", Value: bson.D{{Key: "a", Value: bson.D{{Key: "k\xfe", Value: int32(1)}}}}}},
			wantField: "meta.a", wantReason: `key "k\xfe" is not valid UTF-8`},
		{name: "invalid UTF-8 in a top-level key", doc: bson.D{{Key: "meta", Value: bson.D{{Key: "\xc3", Value: "v"}}}},
			wantField: "meta", wantReason: `key "\xc3" is not valid UTF-8`},
		{name: "invalid UTF-8 in an array element", doc: bson.D{{Key: "meta", Value: bson.D{{Key: "items", Value: bson.A{"ok", "ok", "bad\x80"}}}}},
			wantField: "meta.items.2", wantReason: "not valid UTF-8"},
		{name: "invalid UTF-8 as the whole value", doc: bson.D{{Key: "meta", Value: "\xed\xa0\x80"}}, // an encoded surrogate
			wantField: "meta", wantReason: "not valid UTF-8"},
		{name: "invalid UTF-8 in a regular expression", doc: bson.D{{Key: "meta", Value: bson.D{{Key: "re", Value: bson.Regex{Pattern: "a\xff", Options: "i"}}}}},
			wantField: "meta.re", wantReason: "regular expression is not valid UTF-8"},
		{name: "invalid UTF-8 in a code scope", doc: bson.D{{Key: "meta", Value: bson.D{{Key: "f", Value: bson.CodeWithScope{Code: "x",
			Scope: bson.D{{Key: "s", Value: "\xff"}}}}}}},
			wantField: "meta.f.$scope.s", wantReason: "not valid UTF-8"},
		{name: "NUL in a nested string", doc: bson.D{{Key: "meta", Value: bson.D{{Key: "x", Value: "a\x00b"}}}},
			wantField: "meta.x", wantReason: "NUL character, which jsonb refuses"},
		{name: "NUL in a symbol", doc: bson.D{{Key: "meta", Value: bson.A{bson.Symbol("s\x00")}}},
			wantField: "meta.0", wantReason: "symbol holds a NUL"},
		{name: "NUL in JavaScript code", doc: bson.D{{Key: "meta", Value: bson.D{{Key: "js", Value: bson.JavaScript("\x00")}}}},
			wantField: "meta.js", wantReason: "JavaScript code holds a NUL"},
		{name: "NUL in text", doc: bson.D{{Key: "note", Value: "a\x00b"}},
			wantField: "note", wantReason: "NUL character, which Postgres text refuses"},
		{name: "invalid UTF-8 in text", doc: bson.D{{Key: "note", Value: "bad \xff"}},
			wantField: "note", wantReason: "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row, err := m.Row(doc(t, tc.doc))
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if got, _ := row.Values[0].(string); got != tc.wantJSON {
					t.Errorf("jsonb = %#v, want %s", row.Values[0], tc.wantJSON)
				}
				if got, _ := row.Values[1].(string); got != tc.wantNote {
					t.Errorf("text = %#v, want %q", row.Values[1], tc.wantNote)
				}
				return
			}
			rej := rejection(t, err)
			if rej.Field != tc.wantField || !strings.Contains(rej.Reason, tc.wantReason) {
				t.Fatalf("rejection field %q reason %q, want field %q and a reason with %q", rej.Field, rej.Reason, tc.wantField, tc.wantReason)
			}
			// The dead letter stores field, value and reason in text
			// columns: they must be storable themselves.
			for what, s := range map[string]string{"field": rej.Field, "value": rej.Value, "reason": rej.Reason} {
				if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
					t.Errorf("the rejection's %s %q holds invalid UTF-8 or a NUL", what, s)
				}
			}
		})
	}
}
