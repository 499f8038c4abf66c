// Package benchkit is the money-core benchmark's machinery, apart from the
// end-to-end driver in e2e (BenchmarkMoneyCore), which runs the replicator
// as users do (a configuration file and the cdc binary):
//
//   - workload.go, workloadsteps.go: a deterministic generator of
//     money-core changes (users, purchase requests with their child
//     arrays, payments referencing them, funds-ledger entries written in
//     multi-document transactions with the payment or request they
//     settle, status updates, deletes; the business steps and their
//     documents are in workloadsteps.go), and writer.go, which writes them
//     to MongoDB in an order that keeps every reference's parent first
//     (fundsLedger rejects a missing parent);
//   - rows.go, rawapply.go, ceilings.go: the ceilings measured on the same
//     machine and the same data in the same run: a raw JetStream async
//     publish of the tailer's own payloads, a raw COPY of the rows those
//     payloads map to, and a raw JetStream -> Postgres pipeline with
//     partitioned appliers (no transform at apply time, no version guard,
//     no id_map, no dead letters);
//   - procstat.go, sampler.go: what the benchmark reads from /proc (VmRSS,
//     VmHWM, utime+stime of the replicator, NATS and Postgres processes);
//   - report.go, series.go, table.go, plot.go: the report (JSON, the
//     series over time, the readable table, the PNG plot of throughput,
//     lag and RSS) and Check, which says whether every number in it is
//     present and plausible.
//
// Nothing here starts the replicator; the e2e driver does.
package benchkit
