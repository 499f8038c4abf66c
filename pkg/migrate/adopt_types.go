package migrate

import "fmt"

// typeRelation is how a live column type relates to the migrations'.
type typeRelation int

const (
	typeSame         typeRelation = iota
	typeHolds                     // the live type holds every value of the wanted one
	typeFreeWiden                 // convertible without a rewrite (varchar -> text)
	typeWiden                     // convertible without loss, with a table rewrite
	typeLossy                     // the live type cannot hold the values exactly, nor be converted without loss
	typeIncompatible              // another kind of type
)

var intDigits = map[string]int{"int2": 5, "int4": 10, "int8": 19}

// relate says how live relates to want, with a reason for the
// differences that are not typeSame.
func relate(live, want ctype) (typeRelation, string) {
	if live.display == want.display {
		return typeSame, ""
	}
	switch want.name {
	case "numeric":
		wp, ws, wok := want.numeric()
		if live.name == "numeric" {
			lp, ls, lok := live.numeric()
			switch {
			case !lok:
				return typeHolds, "unconstrained numeric holds every value exactly"
			case !wok:
				return typeWiden, "numeric(" + itoa(lp) + "," + itoa(ls) + ") is narrower than unconstrained numeric"
			case lp-ls >= wp-ws && ls >= ws:
				return typeHolds, ""
			case lp-ls <= wp-ws && ls <= ws:
				return typeWiden, fmt.Sprintf("rounds to %d decimal places and holds %d integer digits, where the migrations' %s holds %d and %d: an amount written into it would be rounded or refused",
					ls, lp-ls, want.display, ws, wp-ws)
			default:
				return typeLossy, fmt.Sprintf("%s cannot become %s without rounding the values it holds (its scale %d is larger than %d)", live.display, want.display, ls, ws)
			}
		}
		if n, ok := intDigits[live.name]; ok {
			if !wok || wp-ws >= n {
				return typeWiden, live.display + " holds no fractional amounts"
			}
			return typeLossy, fmt.Sprintf("%s holds up to %d digits, more than the %d integer digits of %s", live.display, n, wp-ws, want.display)
		}
		if live.name == "float4" || live.name == "float8" {
			return typeLossy, live.display + " holds binary approximations, not exact amounts; converting would keep digits the source never had"
		}
	case "int8", "int4", "int2":
		if ln, ok := intDigits[live.name]; ok {
			if ln >= intDigits[want.name] {
				return typeHolds, ""
			}
			return typeWiden, live.display + " cannot hold every " + want.display + " value"
		}
	case "text":
		if live.name == "varchar" {
			return typeFreeWiden, ""
		}
	case "_text":
		if live.name == "_varchar" {
			return typeWiden, ""
		}
	case "timestamptz":
		if live.name == "timestamp" {
			return typeIncompatible, "timestamp without time zone: converting needs the time zone the application wrote in (ALTER COLUMN ... TYPE timestamptz USING ... AT TIME ZONE '...'), which only a person can tell"
		}
	case "jsonb":
		if live.name == "json" {
			return typeIncompatible, "json keeps duplicate keys and key order, jsonb does not: convert it by hand after checking"
		}
	case "uuid":
		if live.name == "text" || live.name == "varchar" {
			return typeIncompatible, live.display + " where the migrations have uuid: convert it by hand (ALTER COLUMN ... TYPE uuid USING ...::uuid) after checking every value is a uuid"
		}
	}
	if want.kind == "e" && (live.name == "text" || live.name == "varchar") {
		return typeIncompatible, live.display + " where the migrations have enum " + want.display + ": convert it by hand (ALTER COLUMN ... TYPE " + want.display + " USING ...::" + want.display + ") after checking every value is a label"
	}
	return typeIncompatible, ""
}

func (d *differ) columnType(table string, wc, lc *ccol) {
	obj := table + "." + wc.name
	rel, why := relate(lc.typ, wc.typ)
	alter := fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s", quoteIdent(table), quoteIdent(wc.name), wc.typ.display)
	switch rel {
	case typeSame:
	case typeHolds:
		d.note("%s stays %s, which holds every %s value", obj, lc.typ.display, wc.typ.display)
	case typeFreeWiden:
		d.step(phaseColumns, Step{
			Table:    table,
			Summary:  fmt.Sprintf("change %s from %s to %s (no rewrite: the types are binary compatible)", obj, lc.typ.display, wc.typ.display),
			SQL:      []string{alter},
			Blocking: true,
		})
	case typeWiden:
		if !d.widen {
			kind := DiffNarrower
			if wc.typ.name == "numeric" {
				kind = DiffMoney
			}
			d.refuse(kind, obj, fmt.Sprintf("%s, the migrations create %s: %s; cdc migrate --widen converts it without loss (it rewrites the table under an ACCESS EXCLUSIVE lock)", lc.typ.display, wc.typ.display, why))
			return
		}
		d.step(phaseColumns, Step{
			Table:    table,
			Summary:  fmt.Sprintf("widen %s from %s to %s (--widen: no value changes; REWRITES the table under an ACCESS EXCLUSIVE lock)", obj, lc.typ.display, wc.typ.display),
			SQL:      []string{alter},
			Blocking: true,
			Rewrite:  true,
		})
	case typeLossy:
		d.refuse(DiffLossy, obj, fmt.Sprintf("%s, the migrations create %s: %s", lc.typ.display, wc.typ.display, why))
	case typeIncompatible:
		if why == "" {
			why = "another type; convert it by hand"
		}
		d.refuse(DiffType, obj, fmt.Sprintf("%s, the migrations create %s: %s", lc.typ.display, wc.typ.display, why))
	}
}
