package pgtest

// TempDir exposes a managed cluster's temporary directory to the black-box
// tests, which check that Close removes it.
func TempDir(c *Cluster) string { return c.tmpDir }
