package transform

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

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
	// in the same or an earlier transaction.
	MissingMint MissingPolicy = "mint"
	// MissingNull stores NULL and records the dangling reference.
	MissingNull MissingPolicy = "null"
	// MissingReject dead-letters the document.
	MissingReject MissingPolicy = "reject"
	// MissingWait retries until the parent appears or the wait runs out,
	// then dead-letters.
	MissingWait MissingPolicy = "wait"
)

// Check is a sign constraint on a numeric column.
type Check string

// Sign checks.
const (
	CheckPositive    Check = "positive"
	CheckNonNegative Check = "non_negative"
)

// RefSpec configures a TypeRef column.
type RefSpec struct {
	// Collection is the referenced Mongo collection (the id_map key).
	Collection string `yaml:"collection"`
	// Missing is the policy for a parent without a row. Default reject.
	Missing MissingPolicy `yaml:"missing"`
}

// ColumnSpec maps one document field to one column.
type ColumnSpec struct {
	Column   string            `yaml:"column"`
	Field    string            `yaml:"field"`
	Type     ColumnType        `yaml:"type"`
	Required bool              `yaml:"required"`
	Check    Check             `yaml:"check"`
	Ref      *RefSpec          `yaml:"ref"`
	Values   map[string]string `yaml:"values"`
	// EnumType is the Postgres enum type name, for catalog checks.
	EnumType string `yaml:"enum_type"`
	// Default is used when the field is missing or null (a literal of the
	// column's type, as text).
	Default *string `yaml:"default"`

	decimal      DecimalSpec
	path         []string
	defaultValue any
}

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
func Load(fsys fs.FS, dir string) (*Set, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("transforms: read %s: %w", dir, err)
	}
	set := &Set{byCollection: map[string]*Mapping{}}
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
		if prev, dup := set.byCollection[m.Collection]; dup {
			return nil, fmt.Errorf("%w: %s and %s both map collection %q", ErrInvalidMapping, prev.Source, name, m.Collection)
		}
		set.byCollection[m.Collection] = m
	}
	if len(set.byCollection) == 0 {
		return nil, fmt.Errorf("%w: no *.yaml mappings in %s", ErrInvalidMapping, dir)
	}
	return set, nil
}

// NewSet builds a Set from compiled mappings.
func NewSet(ms ...*Mapping) (*Set, error) {
	set := &Set{byCollection: map[string]*Mapping{}}
	for _, m := range ms {
		if _, dup := set.byCollection[m.Collection]; dup {
			return nil, fmt.Errorf("%w: collection %q mapped twice", ErrInvalidMapping, m.Collection)
		}
		set.byCollection[m.Collection] = m
	}
	return set, nil
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
		if !identRE.MatchString(c.Column) {
			return bad("%s: column %q is not a lower-case identifier", where, c.Column)
		}
		if seen[c.Column] {
			return bad("%s: column %q mapped twice", where, c.Column)
		}
		seen[c.Column] = true
		if c.Field == "" {
			return bad("%s: field is required", where)
		}
		c.path = strings.Split(c.Field, ".")
		if mm := numericRE.FindStringSubmatch(string(c.Type)); mm != nil {
			p, _ := strconv.Atoi(mm[1])
			s, _ := strconv.Atoi(mm[2])
			if p < 1 || p > 1000 || s > p {
				return bad("%s: invalid %s", where, c.Type)
			}
			c.decimal = DecimalSpec{Precision: p, Scale: s}
			c.Type = TypeNumeric
		}
		switch c.Type {
		case TypeText, TypeBool, TypeSmallint, TypeInt, TypeBigint, TypeFloat8, TypeTimestamptz, TypeJSONB, TypeTextArray, TypeObjectID, TypeNumeric:
		case TypeRef:
			if c.Ref == nil || c.Ref.Collection == "" {
				return bad("%s: type ref needs ref.collection", where)
			}
			switch c.Ref.Missing {
			case "":
				c.Ref.Missing = MissingReject
			case MissingMint, MissingNull, MissingReject, MissingWait:
			default:
				return bad("%s: ref.missing must be mint, null, reject or wait, got %q", where, c.Ref.Missing)
			}
		case TypeEnum:
			if len(c.Values) == 0 {
				return bad("%s: type enum needs values (document value -> Postgres label)", where)
			}
		default:
			return bad("%s: unknown type %q", where, c.Type)
		}
		if c.Type != TypeRef && c.Ref != nil {
			return bad("%s: ref is only for type ref", where)
		}
		if c.Type != TypeEnum && (len(c.Values) > 0 || c.EnumType != "") {
			return bad("%s: values and enum_type are only for type enum", where)
		}
		if c.Default != nil {
			v, err := c.parseDefault(*c.Default)
			if err != nil {
				return bad("%s: default %q: %v", where, *c.Default, err)
			}
			c.defaultValue = v
		}
		switch c.Check {
		case "":
		case CheckPositive, CheckNonNegative:
			if c.Type != TypeNumeric && c.Type != TypeInt && c.Type != TypeBigint && c.Type != TypeSmallint {
				return bad("%s: check %s needs a numeric or integer column", where, c.Check)
			}
		default:
			return bad("%s: check must be positive or non_negative, got %q", where, c.Check)
		}
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
		return strconv.ParseInt(s, 10, 64)
	case TypeNumeric:
		d, err := parseDecimalString(s)
		if err != nil {
			return nil, err
		}
		_, text, err := fitDecimal(d, c.decimal)
		return text, err
	case TypeFloat8:
		return strconv.ParseFloat(s, 64)
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
