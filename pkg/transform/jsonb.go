package transform

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// nestedRejection is a refusal of one string or key inside a structured
// value (a jsonb column's sub-document or array): path is where below the
// column's field ("" for the value itself), value the offending string or
// key quoted (strconv.Quote: invalid bytes and NUL appear escaped, so the
// text is valid UTF-8 and can be stored in the dead letter). Mapping.reject
// appends path to the rejection's field.
type nestedRejection struct {
	path   string
	value  string
	reason string
}

func (e *nestedRejection) Error() string { return e.reason }

// jsonbValue renders v as the relaxed Extended JSON a jsonb column stores,
// refusing first what jsonb cannot hold as it is:
//
//   - invalid UTF-8 in a string or a key: the Extended JSON encoder would
//     replace each bad byte with U+FFFD, silently changing the data (a text
//     column refuses it too: cleanText);
//   - a NUL character in a string: jsonb refuses the escape \u0000 (SQLSTATE
//     22P05, PostgreSQL docs 8.14 "JSON Types"), and text columns refuse NUL
//     bytes likewise. (BSON keys are NUL-terminated: they cannot hold one.)
//   - a key twice in one sub-document: jsonb keeps the last copy while a
//     column reading the same path takes the first (dupkeys.go);
//   - a non-canonical Decimal128: the encoder would write the number the
//     driver reads from its bits, which is not the value (canonicalDecimal128).
//
// The six characters of a literal `\u0000` in a string are an ordinary
// string: they are encoded as `\\u0000`, which jsonb accepts.
func jsonbValue(v bson.RawValue) (string, error) {
	if err := checkJSONStrings(v, ""); err != nil {
		return "", err
	}
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false)
	if err != nil {
		return "", reason(fmt.Sprintf("cannot encode as JSON: %v", err))
	}
	return string(b[5 : len(b)-1]), nil
}

// checkJSONStrings walks v depth-first and returns a *nestedRejection for
// the first string or key jsonb cannot store as it is. path is v's place
// below the column's field.
func checkJSONStrings(v bson.RawValue, path string) error {
	switch v.Type {
	case bson.TypeString:
		return checkJSONString(v.StringValue(), path, "string")
	case bson.TypeSymbol:
		return checkJSONString(v.Symbol(), path, "symbol")
	case bson.TypeJavaScript:
		return checkJSONString(v.JavaScript(), path, "JavaScript code")
	case bson.TypeCodeWithScope:
		code, scope := v.CodeWithScope()
		if err := checkJSONString(code, path, "JavaScript code"); err != nil {
			return err
		}
		return checkJSONStrings(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: scope}, join(path, "$scope"))
	case bson.TypeRegex:
		pattern, options := v.Regex()
		if err := checkJSONString(pattern, path, "regular expression"); err != nil {
			return err
		}
		return checkJSONString(options, path, "regular expression options")
	case bson.TypeDBPointer:
		ns, _ := v.DBPointer()
		return checkJSONString(ns, path, "DBPointer namespace")
	case bson.TypeDecimal128:
		d := v.Decimal128()
		if d.IsNaN() || d.IsInf() != 0 {
			return nil
		}
		if err := canonicalDecimal128(d); err != nil {
			return &nestedRejection{path: path, value: valueText(v), reason: err.Error()}
		}
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		doc := bson.Raw(v.Value)
		elems, err := doc.Elements()
		if err != nil {
			return &nestedRejection{path: path, value: "<invalid BSON>", reason: "the document is not valid BSON"}
		}
		// Array keys are not rendered (elements are written in order), so
		// only a sub-document's duplicates change what jsonb stores.
		if v.Type == bson.TypeEmbeddedDocument {
			if dup := checkLevel(doc, path); dup != nil {
				dup.relative = true
				return dup
			}
		}
		for i, e := range elems {
			key := e.Key()
			if v.Type == bson.TypeArray {
				key = strconv.Itoa(i)
			} else if !utf8.ValidString(key) {
				return &nestedRejection{path: path, value: strconv.Quote(key),
					reason: fmt.Sprintf("key %s is not valid UTF-8 (jsonb would store U+FFFD in its place)", strconv.Quote(key))}
			}
			if err := checkJSONStrings(e.Value(), join(path, key)); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkJSONString(s, path, what string) error {
	switch {
	case !utf8.ValidString(s):
		return &nestedRejection{path: path, value: quoteTruncated(s),
			reason: what + " is not valid UTF-8 (jsonb would store U+FFFD in its place)"}
	case strings.IndexByte(s, 0) >= 0:
		return &nestedRejection{path: path, value: quoteTruncated(s),
			reason: what + " holds a NUL character, which jsonb refuses"}
	}
	return nil
}

// quoteTruncated quotes s (escaping invalid bytes and NUL), cut to about
// maxValueText bytes of s.
func quoteTruncated(s string) string {
	if len(s) <= maxValueText {
		return strconv.Quote(s)
	}
	cut := maxValueText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("...(truncated, %d bytes)", len(s))
}

// join appends key to a dotted path (either may be empty).
func join(path, key string) string {
	switch {
	case path == "":
		return key
	case key == "":
		return path
	}
	return path + "." + key
}
