// Package transform maps MongoDB documents to rows of the target schema,
// one declarative YAML mapping per collection (the format is documented in
// transforms/README.md).
//
// A mapping is loaded and compiled once (Load, Compile), checked against the
// live Postgres catalog before the sink starts (CheckCatalog: a missing
// table or column, or a type that cannot hold the value, refuses to start
// and names the mapping, the field and the column), and then applied to
// each document (Mapping.Row). Conversions are exact: money goes through
// shopspring/decimal as plain-notation text, never float64; a value a
// column cannot hold exactly is a *Rejection, never coerced.
//
// References to other documents (ObjectIds) are not resolved here: Row
// returns them as Refs, and the sink resolves them through id_map inside
// the transaction that writes the row.
package transform
