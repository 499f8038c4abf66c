package transform

import (
	"fmt"
	"strconv"
	"strings"
)

// compile validates a column and prepares its path, decimal spec, enum
// values, function and default. inChild allows the element pseudo fields;
// inArray allows $index. The steps run in this order, each refusing what
// it checks, so a column with several faults reports the same first one
// on every load.
func (c *ColumnSpec) compile(inChild, inArray bool) error {
	if !identRE.MatchString(c.Column) {
		return fmt.Errorf("column %q is not a lower-case identifier", c.Column)
	}
	for _, step := range []func() error{
		func() error { return c.compileSource(inChild, inArray) },
		c.compileNumeric,
		c.compileType,
		c.checkTypeOptions,
		c.compileDefault,
		c.compileCheck,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// compileSource resolves where the value comes from: a registered
// function, or Field (a path, or one of the pseudo fields of a child).
func (c *ColumnSpec) compileSource(inChild, inArray bool) error {
	if c.Func != "" {
		fn, ok := lookupFunc(c.Func)
		if !ok {
			return fmt.Errorf("func %q is not registered (registered: %s)", c.Func, strings.Join(FuncNames(), ", "))
		}
		c.fn, c.kind = fn, fieldFunc
		return nil
	}
	if c.Field == "" {
		return fmt.Errorf("field (or func) is required")
	}
	switch {
	case c.Field == "$":
		if !inChild {
			return fmt.Errorf(`field "$" (the element) is only for child columns`)
		}
		c.kind = fieldElem
	case c.Field == "$index":
		if !inArray {
			return fmt.Errorf(`field "$index" is only for columns of an array child`)
		}
		c.kind = fieldIndex
	case strings.HasPrefix(c.Field, "$root."):
		if !inChild {
			return fmt.Errorf(`field "$root.<path>" is only for child columns; use the path`)
		}
		c.kind = fieldRoot
		c.path = strings.Split(strings.TrimPrefix(c.Field, "$root."), ".")
	default:
		c.kind = fieldPath
		c.path = strings.Split(c.Field, ".")
	}
	for _, p := range c.path {
		if p == "" || strings.HasPrefix(p, "$") {
			return fmt.Errorf("field %q: empty or $-prefixed path component", c.Field)
		}
	}
	return nil
}

// compileNumeric turns a numeric(P,S) type into TypeNumeric with its
// DecimalSpec, and settles how the column takes doubles.
func (c *ColumnSpec) compileNumeric() error {
	if mm := numericRE.FindStringSubmatch(string(c.Type)); mm != nil {
		p, _ := strconv.Atoi(mm[1])
		s, _ := strconv.Atoi(mm[2])
		if p < 1 || p > 1000 || s > p {
			return fmt.Errorf("invalid %s", c.Type)
		}
		c.decimal = DecimalSpec{Precision: p, Scale: s}
		c.Type = TypeNumeric
	}
	switch c.Doubles {
	case "":
		if c.Type == TypeNumeric {
			c.Doubles = DoublesExact
		}
	case DoublesExact, DoublesShortest:
		if c.Type != TypeNumeric {
			return fmt.Errorf("doubles is only for numeric(P,S) columns (integer columns take a double only when it is an exact integer up to 2^53)")
		}
	default:
		return fmt.Errorf("doubles must be exact or shortest, got %q", c.Doubles)
	}
	c.decimal.Doubles = c.Doubles
	return nil
}

// compileType refuses an unknown type and prepares the options of the
// types that have them (ref, enum).
func (c *ColumnSpec) compileType() error {
	switch c.Type {
	case TypeText, TypeBool, TypeSmallint, TypeInt, TypeBigint, TypeFloat8, TypeTimestamptz, TypeJSONB, TypeTextArray, TypeObjectID, TypeNumeric:
		return nil
	case TypeRef:
		return c.compileRef()
	case TypeEnum:
		return c.compileEnum()
	}
	return fmt.Errorf("unknown type %q", c.Type)
}

// compileRef checks a ref column's collection and policy, and fills in
// the default policy (reject) and wait.
func (c *ColumnSpec) compileRef() error {
	if c.Ref == nil || c.Ref.Collection == "" {
		return fmt.Errorf("type ref needs ref.collection")
	}
	switch c.Ref.Missing {
	case "":
		c.Ref.Missing = MissingReject
	case MissingMint, MissingNull, MissingReject, MissingWait:
	default:
		return fmt.Errorf("ref.missing must be mint, null, reject or wait, got %q", c.Ref.Missing)
	}
	if c.Ref.Missing != MissingWait {
		if c.Ref.Wait != 0 {
			return fmt.Errorf("ref.wait is only for missing: wait")
		}
		return nil
	}
	if c.Ref.Wait == 0 {
		c.Ref.Wait = DefaultRefWait
	}
	if c.Ref.Wait < MinRefWait || c.Ref.Wait > MaxRefWait {
		return fmt.Errorf("ref.wait %s is outside [%s, %s] (write a duration such as 5m)", c.Ref.Wait, MinRefWait, MaxRefWait)
	}
	return nil
}

// compileEnum merges Labels into Values and requires at least one.
func (c *ColumnSpec) compileEnum() error {
	if c.Values == nil {
		c.Values = map[string]string{}
	}
	for _, l := range c.Labels {
		if prev, ok := c.Values[l]; ok && prev != l {
			return fmt.Errorf("enum value %q is both a label and mapped to %q", l, prev)
		}
		c.Values[l] = l
	}
	if len(c.Values) == 0 {
		return fmt.Errorf("type enum needs values (document value -> Postgres label) or labels")
	}
	return nil
}

// checkTypeOptions refuses options that the column's type does not take.
func (c *ColumnSpec) checkTypeOptions() error {
	if c.kind == fieldIndex && !c.Type.integer() {
		return fmt.Errorf(`field "$index" needs an integer column type`)
	}
	if c.Type != TypeRef && c.Ref != nil {
		return fmt.Errorf("ref is only for type ref")
	}
	if c.Type != TypeEnum && (len(c.Values) > 0 || len(c.Labels) > 0 || c.EnumType != "") {
		return fmt.Errorf("values, labels and enum_type are only for type enum")
	}
	return nil
}

// compileDefault parses Default into the value the column gets; decimal
// columns take none.
func (c *ColumnSpec) compileDefault() error {
	if c.Default == nil {
		return nil
	}
	if c.Type == TypeNumeric {
		return fmt.Errorf("a decimal column takes no default: a missing or null amount is rejected, never coerced (audit CR-4)")
	}
	v, err := c.parseDefault(*c.Default)
	if err != nil {
		return fmt.Errorf("default %q: %v", *c.Default, err)
	}
	c.defaultValue = v
	return nil
}

// compileCheck checks the sign check's name and that the column is a
// number.
func (c *ColumnSpec) compileCheck() error {
	switch c.Check {
	case "":
		return nil
	case CheckPositive, CheckNonNegative, CheckNonZero:
		if c.Type != TypeNumeric && !c.Type.integer() {
			return fmt.Errorf("check %s needs a numeric or integer column", c.Check)
		}
		return nil
	}
	return fmt.Errorf("check must be positive, non_negative or non_zero, got %q", c.Check)
}

// integer reports whether t is one of the integer column types.
func (t ColumnType) integer() bool {
	return t == TypeSmallint || t == TypeInt || t == TypeBigint
}
