package sink

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

// idSet is the id_map entries a batch needs.
type idSet map[docRef]uuid.UUID

func (s idSet) get(coll, key string) (uuid.UUID, bool) {
	id, ok := s[docRef{coll, key}]
	return id, ok
}

// rowID is the primary-key value of the item's row: its id_map new_id for
// uuid ids (nil when a delete finds none), its key string for text ids.
func (s idSet) rowID(it *item) (any, error) {
	if it.mapping.ID.Type == "text" {
		return it.docKey, nil
	}
	id, ok := s.get(it.mapping.Collection, it.docKey)
	if !ok {
		if it.ev.Op == event.OpDelete {
			return nil, nil
		}
		return nil, fmt.Errorf("id_map has no entry for %s %s after minting", it.mapping.Collection, it.docKey)
	}
	return id, nil
}

// resolveIDs mints id_map entries for the documents being written (and for
// references with the mint policy), honouring mappings that already exist,
// and looks up every other id the winners need, in one round trip.
func resolveIDs(ctx context.Context, tx pgx.Tx, winners []*item) (idSet, error) {
	var mintColl, mintKey, lookColl, lookKey []string
	var mintID []uuid.UUID
	looked, minted := map[docRef]bool{}, map[docRef]bool{}
	add := func(coll, key string, mint bool) {
		k := docRef{coll, key}
		if !looked[k] {
			looked[k] = true
			lookColl, lookKey = append(lookColl, coll), append(lookKey, key)
		}
		// A key first seen as a reference may be minted later in the
		// batch, as the document the batch writes.
		if mint && !minted[k] {
			minted[k] = true
			id, err := uuid.NewV7()
			if err != nil {
				id = uuid.New()
			}
			mintColl, mintKey, mintID = append(mintColl, coll), append(mintKey, key), append(mintID, id)
		}
	}
	for _, it := range winners {
		if it.mapping.ID.Type == "uuid" {
			add(it.mapping.Collection, it.docKey, it.ev.Op != event.OpDelete)
		}
		for _, ref := range refsOf(it) {
			add(ref.Collection, ref.LegacyID, ref.Missing == transform.MissingMint)
		}
	}
	out := idSet{}
	if len(lookColl) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	if len(mintColl) > 0 {
		b.Queue(`INSERT INTO id_map (collection, legacy_object_id, new_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
			ON CONFLICT (collection, legacy_object_id) DO NOTHING`, mintColl, mintKey, mintID)
	}
	// One index probe per key: package state, "Keyed lookups".
	b.Queue(`SELECT k.collection, k.legacy_object_id, m.new_id
		FROM unnest($1::text[], $2::text[]) AS k(collection, legacy_object_id)
		CROSS JOIN LATERAL (SELECT m.new_id FROM id_map m
			WHERE m.collection = k.collection AND m.legacy_object_id = k.legacy_object_id LIMIT 1) AS m`, lookColl, lookKey)
	br := tx.SendBatch(ctx, b)
	if len(mintColl) > 0 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("id_map mint: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, fmt.Errorf("id_map lookup: %w", err)
	}
	for rows.Next() {
		var k docRef
		var id uuid.UUID
		if err := rows.Scan(&k.coll, &k.key, &id); err != nil {
			rows.Close()
			br.Close()
			return nil, fmt.Errorf("id_map lookup: %w", err)
		}
		out[k] = id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		br.Close()
		return nil, fmt.Errorf("id_map lookup: %w", err)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("id_map: %w", err)
	}
	return out, nil
}
