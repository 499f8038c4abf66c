package transform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FormatVersion is the mapping file format version this build reads.
const FormatVersion = 1

// ColumnType is the kind of value a column receives.
type ColumnType string

// The column types a mapping can name. Numeric types are written
// numeric(P,S).
const (
	TypeText        ColumnType = "text"
	TypeBool        ColumnType = "bool"
	TypeSmallint    ColumnType = "smallint"
	TypeInt         ColumnType = "int"
	TypeBigint      ColumnType = "bigint"
	TypeNumeric     ColumnType = "numeric"
	TypeFloat8      ColumnType = "float8"
	TypeTimestamptz ColumnType = "timestamptz"
	TypeJSONB       ColumnType = "jsonb"
	TypeTextArray   ColumnType = "text[]"
	TypeObjectID    ColumnType = "objectid"
	TypeRef         ColumnType = "ref"
	TypeEnum        ColumnType = "enum"
)

// MissingPolicy says what happens when a referenced parent is not there.
type MissingPolicy string

// Policies for references to documents that have no row (yet).
const (
	// MissingMint mints the parent's id_map entry and writes the
	// reference; the FK (if any) must then be satisfied by the parent's row
	// in the same or an earlier transaction. It is also how a
	// sub-document's own ObjectId becomes its row's uuid.
	MissingMint MissingPolicy = "mint"
	// MissingNull stores NULL and records the dangling reference in
	// cdc.dangling_refs; the sink fills the column in when the parent
	// arrives.
	MissingNull MissingPolicy = "null"
	// MissingReject dead-letters the document.
	MissingReject MissingPolicy = "reject"
	// MissingWait retries until the parent appears or RefSpec.Wait runs
	// out, then dead-letters (error class "parked").
	MissingWait MissingPolicy = "wait"
)

// DefaultRefWait is how long a reference with policy wait waits for its
// parent when the mapping does not say.
const DefaultRefWait = 5 * time.Minute

// Bounds of ref.wait.
const (
	MinRefWait = time.Second
	MaxRefWait = 7 * 24 * time.Hour
)

// Check is a sign constraint on a numeric column.
type Check string

// Sign checks. A negative zero (-0) fails positive and non_negative: its
// sign is ambiguous, and a column that forbids negatives should not
// receive one.
const (
	CheckPositive    Check = "positive"
	CheckNonNegative Check = "non_negative"
	CheckNonZero     Check = "non_zero"
)

// RefSpec configures a TypeRef column.
type RefSpec struct {
	// Collection is the referenced Mongo collection (the id_map key).
	Collection string `yaml:"collection"`
	// Missing is the policy for a parent without a row. Default reject.
	Missing MissingPolicy `yaml:"missing"`
	// Wait bounds policy wait (a duration such as "5m"); default
	// DefaultRefWait. Only with missing: wait.
	Wait time.Duration `yaml:"wait"`
}

// ColumnSpec maps one document field to one column.
type ColumnSpec struct {
	Column string `yaml:"column"`
	// Field is the dotted path of the value. In a child's columns it is
	// relative to the array element (or sub-document); the pseudo fields
	// "$" (the element itself), "$index" (its array index) and
	// "$root.<path>" (a path from the document root) are also accepted.
	// With Func, Field only names the source in rejections.
	Field    string            `yaml:"field"`
	Type     ColumnType        `yaml:"type"`
	Required bool              `yaml:"required"`
	Check    Check             `yaml:"check"`
	Ref      *RefSpec          `yaml:"ref"`
	Values   map[string]string `yaml:"values"`
	// Labels are enum values stored unchanged (document value = Postgres
	// label); merged into Values.
	Labels []string `yaml:"labels"`
	// EnumType is the Postgres enum type name, for catalog checks.
	EnumType string `yaml:"enum_type"`
	// Default is used when the field is missing or null (a literal of the
	// column's type, as text). Decimal columns take none: a missing
	// amount is rejected, never coerced (audit CR-4).
	Default *string `yaml:"default"`
	// NullValues are string values that mean "absent" (e.g. "" for a
	// legacy string reference); they are treated like a missing field.
	NullValues []string `yaml:"null_values"`
	// Func names a registered function (RegisterFunc) that computes the
	// value from the document (or the child element); its result is then
	// converted by Type like any field value.
	Func string `yaml:"func"`
	// Doubles is how a numeric(P,S) column takes a double or an
	// exponent-form string: exact (the default: only when its digits are
	// certainly the source's at the column's scale) or shortest (its
	// shortest round-trip form, for data known to be doubles; never for
	// money). See DoublePolicy.
	Doubles DoublePolicy `yaml:"doubles"`

	decimal      DecimalSpec
	path         []string
	kind         fieldKind
	fn           Func
	defaultValue any
}

type fieldKind int

const (
	fieldPath  fieldKind = iota // a path relative to the scope document
	fieldElem                   // "$": the element itself
	fieldIndex                  // "$index": the element's array index
	fieldRoot                   // "$root.<path>": from the document root
	fieldFunc                   // computed by a registered function
)

// IDSpec says how the document _id becomes the primary key.
type IDSpec struct {
	// Column is the primary-key column.
	Column string `yaml:"column"`
	// Type: uuid (minted or honoured through id_map) or text (the _id's
	// string form). Default uuid.
	Type string `yaml:"type"`
}

// Mapping is one collection's declarative transform.
type Mapping struct {
	Version    int          `yaml:"version"`
	Collection string       `yaml:"collection"`
	Table      string       `yaml:"table"`
	ID         IDSpec       `yaml:"id"`
	Columns    []ColumnSpec `yaml:"columns"`
	// Children are the child tables filled from arrays and sub-documents
	// of the document, in dependency order (a child may reference rows of
	// an earlier child).
	Children []ChildSpec `yaml:"children"`
	// Delete: hard (DELETE the row) or soft (set SoftDeleteColumn).
	Delete           string `yaml:"delete"`
	SoftDeleteColumn string `yaml:"soft_delete_column"`
	// AppendOnly rows are only inserted: an update or delete of the
	// document is a violation.
	AppendOnly bool `yaml:"append_only"`

	// Source is the file the mapping came from, for messages.
	Source string `yaml:"-"`
}

// Set is the compiled mappings by collection.
type Set struct {
	byCollection map[string]*Mapping
}

// Get returns the mapping of a collection.
func (s *Set) Get(collection string) (*Mapping, bool) {
	m, ok := s.byCollection[collection]
	return m, ok
}

// Collections lists the mapped collections, sorted.
func (s *Set) Collections() []string {
	out := make([]string, 0, len(s.byCollection))
	for c := range s.byCollection {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Mappings lists the mappings sorted by collection.
func (s *Set) Mappings() []*Mapping {
	out := make([]*Mapping, 0, len(s.byCollection))
	for _, c := range s.Collections() {
		out = append(out, s.byCollection[c])
	}
	return out
}

// Load reads every *.yaml / *.yml mapping in dir of fsys and compiles it.
// Besides each file's own checks, a reference whose policy waits for,
// rejects or nulls a missing parent must name a mapped collection (a
// parent that can never arrive would park every document).
func Load(fsys fs.FS, dir string) (*Set, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("transforms: read %s: %w", dir, err)
	}
	var ms []*Mapping
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		data, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("transforms: read %s: %w", name, err)
		}
		m, err := Parse(data, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%w: no *.yaml mappings in %s", ErrInvalidMapping, dir)
	}
	set, err := NewSet(ms...)
	if err != nil {
		return nil, err
	}
	if err := set.checkRefs(); err != nil {
		return nil, err
	}
	return set, nil
}

// NewSet builds a Set from compiled mappings. Unlike Load it does not
// require referenced collections to be mapped, so a test can build a set
// of one mapping.
func NewSet(ms ...*Mapping) (*Set, error) {
	set := &Set{byCollection: map[string]*Mapping{}}
	for _, m := range ms {
		if prev, dup := set.byCollection[m.Collection]; dup {
			return nil, fmt.Errorf("%w: %s and %s both map collection %q", ErrInvalidMapping, prev.Source, m.Source, m.Collection)
		}
		set.byCollection[m.Collection] = m
	}
	return set, nil
}

// checkRefs refuses references to collections no mapping replicates,
// except with policy mint (sub-document ids, or parents kept elsewhere).
func (s *Set) checkRefs() error {
	var problems []string
	for _, m := range s.Mappings() {
		m.eachColumn(func(table string, c *ColumnSpec) {
			if c.Type != TypeRef || c.Ref.Missing == MissingMint {
				return
			}
			if _, ok := s.byCollection[c.Ref.Collection]; !ok {
				problems = append(problems, fmt.Sprintf("%s: %s.%s references collection %q, which no mapping replicates (policy %s could never be satisfied)",
					m.Source, table, c.Column, c.Ref.Collection, c.Ref.Missing))
			}
		})
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrInvalidMapping, strings.Join(problems, "\n  "))
	}
	return nil
}

// eachColumn calls fn for every column of the mapping and its children.
func (m *Mapping) eachColumn(fn func(table string, c *ColumnSpec)) {
	for i := range m.Columns {
		fn(m.Table, &m.Columns[i])
	}
	for i := range m.Children {
		ch := &m.Children[i]
		for j := range ch.Columns {
			fn(ch.Table, &ch.Columns[j])
		}
	}
}

// Parse decodes and compiles one mapping file; unknown keys are errors.
func Parse(data []byte, source string) (*Mapping, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m Mapping
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidMapping, source, err)
	}
	m.Source = source
	if err := m.compile(); err != nil {
		return nil, err
	}
	return &m, nil
}

var (
	identRE   = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	tableRE   = regexp.MustCompile(`^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$`)
	numericRE = regexp.MustCompile(`^numeric\((\d+),\s*(\d+)\)$`)
)

func (m *Mapping) compile() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidMapping, m.Source, fmt.Sprintf(format, args...))
	}
	if m.Version != FormatVersion {
		return bad("version must be %d, got %d", FormatVersion, m.Version)
	}
	if m.Collection == "" {
		return bad("collection is required")
	}
	if !tableRE.MatchString(m.Table) {
		return bad("table %q must be a lower-case identifier, optionally schema-qualified", m.Table)
	}
	if m.ID.Column == "" {
		m.ID.Column = "id"
	}
	if !identRE.MatchString(m.ID.Column) {
		return bad("id.column %q is not a lower-case identifier", m.ID.Column)
	}
	switch m.ID.Type {
	case "":
		m.ID.Type = "uuid"
	case "uuid", "text":
	default:
		return bad("id.type must be uuid or text, got %q", m.ID.Type)
	}
	switch m.Delete {
	case "":
		m.Delete = "hard"
	case "hard":
	case "soft":
		if !identRE.MatchString(m.SoftDeleteColumn) {
			return bad("delete: soft needs soft_delete_column")
		}
	default:
		return bad("delete must be hard or soft, got %q", m.Delete)
	}
	seen := map[string]bool{m.ID.Column: true}
	for i := range m.Columns {
		c := &m.Columns[i]
		where := fmt.Sprintf("columns[%d] (%s)", i, c.Column)
		if seen[c.Column] {
			return bad("%s: column %q mapped twice", where, c.Column)
		}
		seen[c.Column] = true
		if err := c.compile(false, false); err != nil {
			return bad("%s: %v", where, err)
		}
	}
	tables := map[string]bool{m.Table: true}
	for i := range m.Children {
		ch := &m.Children[i]
		where := fmt.Sprintf("children[%d] (%s)", i, ch.Table)
		if tables[ch.Table] {
			return bad("%s: table %q is filled twice", where, ch.Table)
		}
		tables[ch.Table] = true
		if err := ch.compile(); err != nil {
			return bad("%s: %v", where, err)
		}
	}
	if m.AppendOnly && len(m.Children) > 0 {
		return bad("append_only mappings cannot have children (replacing a child set is an update)")
	}
	return nil
}

// ColumnNames lists the id column and then every mapped column.
func (m *Mapping) ColumnNames() []string {
	out := make([]string, 0, len(m.Columns)+1)
	out = append(out, m.ID.Column)
	for _, c := range m.Columns {
		out = append(out, c.Column)
	}
	return out
}

// parseDefault converts a default literal to the value the column gets.
func (c *ColumnSpec) parseDefault(s string) (any, error) {
	switch c.Type {
	case TypeText, TypeObjectID:
		return cleanText(s)
	case TypeBool:
		return strconv.ParseBool(s)
	case TypeSmallint, TypeInt, TypeBigint:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, err
		}
		if err := c.checkSign(n > 0, n == 0, false); err != nil {
			return nil, err
		}
		return n, nil
	case TypeFloat8:
		return strconv.ParseFloat(s, 64)
	case TypeJSONB:
		if !json.Valid([]byte(s)) {
			return nil, fmt.Errorf("not valid JSON")
		}
		return s, nil
	case TypeTextArray:
		var arr []string
		if err := json.Unmarshal([]byte(s), &arr); err != nil {
			return nil, fmt.Errorf("a text[] default is a JSON array of strings, e.g. \"[]\"")
		}
		if arr == nil {
			arr = []string{}
		}
		return arr, nil
	case TypeEnum:
		for _, label := range c.Values {
			if label == s {
				return s, nil
			}
		}
		return nil, fmt.Errorf("not one of the mapped enum labels")
	}
	return nil, fmt.Errorf("type %s takes no default", c.Type)
}

// Reference is one reference column of a mapping: Table.Column of
// Collection's rows holds the id of a document of Parent.
type Reference struct {
	Collection, Table, Column, Parent string
	Missing                           MissingPolicy
}

// ToleratesOrder reports whether the reference copes with its parent
// arriving after the child (or through another sink lane, in no fixed
// order): wait sets the child aside until the parent is applied, null
// stores NULL and fills the column in when it is. Reject dead-letters the
// child and mint writes an id whose foreign key the parent's row must
// already satisfy, so both need the parent applied first: in one stream
// the source order guarantees it, across lanes nothing does.
func (r Reference) ToleratesOrder() bool {
	return r.Missing == MissingWait || r.Missing == MissingNull
}

// References lists every reference column of the set's mappings (children
// included), in collection order.
func (s *Set) References() []Reference {
	var out []Reference
	for _, m := range s.Mappings() {
		m.eachColumn(func(table string, c *ColumnSpec) {
			if c.Type == TypeRef {
				out = append(out, Reference{Collection: m.Collection, Table: table, Column: c.Column, Parent: c.Ref.Collection, Missing: c.Ref.Missing})
			}
		})
	}
	return out
}
