// Package transform maps MongoDB documents to rows of the target schema,
// one declarative YAML mapping per collection (the format, and the
// document shapes of the escrow collections, are documented in
// transforms/README.md).
//
// A mapping is parsed and compiled once (Parse, Load), checked against the
// live Postgres catalog before the sink starts (CheckCatalog: a missing
// table or column, child tables included, a type that cannot hold the
// value, an enum label the type lacks, or a NOT NULL column the mapping
// could leave NULL refuses to start and names the mapping, the field and
// the column), and then applied to each document (Mapping.Row).
//
// Conversions are exact: money goes through shopspring/decimal as
// plain-notation text, never float64; a value a column cannot hold exactly
// is a *Rejection naming the field (array indexes included) and the reason,
// never coerced. Nor is a digit the source did not have stored: a double or
// an exponent-form string reaches a numeric column only when exact at its
// scale (DoublePolicy). A document its readers would read differently is
// refused: a non-canonical Decimal128 (canonicalDecimal128) and a field
// name twice in a level the mapping reads (dupkeys.go). Row never panics
// on a well-formed BSON document.
//
// A Row carries the parent row's Values, its References and one ChildSet
// per child table (arrays and sub-documents of the document), which the
// sink replaces whole in the parent's transaction. References to other
// documents (ObjectIds) are not resolved here: the sink resolves them
// through id_map inside the transaction that writes the row, following
// each column's policy for a missing parent (mint, null, reject, wait).
//
// Derived values a mapping cannot express are computed by functions
// registered by name (RegisterFunc) and converted by the column's type
// like any field value.
package transform
