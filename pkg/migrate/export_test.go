package migrate

import (
	"context"
	"fmt"
)

// Fingerprints returns the application schema the shadow run of every
// migration produces and the one the database at pgURL has, as text.
func Fingerprints(ctx context.Context, pgURL string) (shadowed, live string, err error) {
	db, err := open(ctx, pgURL)
	if err != nil {
		return "", "", err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	runs, err := shadow(ctx, conn)
	if err != nil {
		return "", "", err
	}
	lc, err := readCatalog(ctx, conn, "public", map[string]string{"public.": ""})
	if err != nil {
		return "", "", err
	}
	return runs[len(runs)-1].after.fingerprint(), lc.fingerprint(), nil
}

// Drift lists what an adoption would still change or refuse to bring the
// database at pgURL to the schema of every migration: nothing, for a
// database the migrations (or an adoption) made.
func Drift(ctx context.Context, pgURL string, opts AdoptOptions) ([]string, error) {
	db, err := open(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	runs, err := shadow(ctx, conn)
	if err != nil {
		return nil, err
	}
	live, err := readCatalog(ctx, conn, "public", map[string]string{"public.": ""})
	if err != nil {
		return nil, err
	}
	final := runs[len(runs)-1].after
	d := &differ{want: final, final: final, live: live, widen: opts.Widen, role: "test", needs: map[string]map[string]bool{}}
	d.run()
	var out []string
	for _, s := range d.ordered() {
		out = append(out, "step: "+s.Summary)
	}
	for _, df := range d.diffs {
		out = append(out, fmt.Sprintf("difference: %s", df))
	}
	return out, nil
}
