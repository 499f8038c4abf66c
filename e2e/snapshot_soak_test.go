//go:build soak

package e2e

// The acceptance size of issue 5: 50,000 documents over five collections,
// 5,000 changes during the snapshot (`make test-soak`).
func init() { snScale.docs, snScale.changes = 50000, 5000 }
