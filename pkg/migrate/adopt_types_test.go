package migrate

import "testing"

// TestRelate: how a live column type relates to the migrations' decides
// between keeping it, converting it (freely, or with --widen) and refusing
// the adoption.
func TestRelate(t *testing.T) {
	num := func(p, s int) ctype {
		return ctype{display: "numeric(" + itoa(p) + "," + itoa(s) + ")", name: "numeric", kind: "b", mod: int32(p<<16|s) + 4}
	}
	base := func(display, name string) ctype { return ctype{display: display, name: name, kind: "b", mod: -1} }
	enum := func(name string) ctype { return ctype{display: name, name: name, kind: "e", mod: -1} }
	money, wei := num(38, 18), num(78, 0)
	for _, tc := range []struct {
		name       string
		live, want ctype
		rel        typeRelation
	}{
		{"same", money, money, typeSame},
		{"seller offers numeric(18,8)", num(18, 8), money, typeWiden},
		{"fewer decimals only", num(30, 10), money, typeWiden},
		{"wider both ways", num(40, 20), money, typeHolds},
		{"unconstrained numeric", base("numeric", "numeric"), money, typeHolds},
		{"wei with decimals", money, wei, typeLossy},
		{"more decimals, fewer digits", num(38, 20), money, typeLossy},
		{"wei numeric(40,0)", num(40, 0), wei, typeWiden},
		{"double amount", base("double precision", "float8"), money, typeLossy},
		{"real amount", base("real", "float4"), money, typeLossy},
		{"bigint amount", base("bigint", "int8"), money, typeWiden},
		{"bigint wei", base("bigint", "int8"), wei, typeWiden},
		{"integer for bigint", base("integer", "int4"), base("bigint", "int8"), typeWiden},
		{"bigint for integer", base("bigint", "int8"), base("integer", "int4"), typeHolds},
		{"varchar for text", base("character varying(255)", "varchar"), base("text", "text"), typeFreeWiden},
		{"char for text", base("character(10)", "bpchar"), base("text", "text"), typeIncompatible},
		{"timestamp for timestamptz", base("timestamp without time zone", "timestamp"), base("timestamp with time zone", "timestamptz"), typeIncompatible},
		{"json for jsonb", base("json", "json"), base("jsonb", "jsonb"), typeIncompatible},
		{"text for uuid", base("text", "text"), base("uuid", "uuid"), typeIncompatible},
		{"text for an enum", base("text", "text"), enum("payment_status"), typeIncompatible},
		{"another enum", enum("status"), enum("payment_status"), typeIncompatible},
		{"text for numeric", base("text", "text"), money, typeIncompatible},
	} {
		if rel, why := relate(tc.live, tc.want); rel != tc.rel {
			t.Errorf("%s: relate(%s, %s) = %d (%s), want %d", tc.name, tc.live.display, tc.want.display, rel, why, tc.rel)
		}
	}
}
