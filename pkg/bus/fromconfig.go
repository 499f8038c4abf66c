package bus

import "github.com/amanat/cdc/pkg/config"

// StreamsFromConfig derives the stream declarations of cfg (the nats.*
// keys and sink.lanes). The replicator, status and the operator commands
// all derive them here, so they name the same streams, subjects and
// buckets.
func StreamsFromConfig(cfg *config.Config) StreamsConfig {
	return StreamsConfig{
		Stream:           cfg.NATS.Stream,
		SubjectPrefix:    cfg.NATS.SubjectPrefix,
		DLQStream:        cfg.NATS.DLQStream,
		Replicas:         cfg.NATS.Replicas,
		DedupWindow:      cfg.NATS.DedupWindow,
		MaxAge:           cfg.NATS.MaxAge,
		MaxBytes:         cfg.NATS.MaxBytes,
		CheckpointBucket: cfg.NATS.CheckpointBucket,
	}.WithLanes(ConfiguredLanes(cfg))
}

// ConfiguredLanes is cfg's sink.lanes as Lanes (nil: one lane). A
// malformed value is nil too: Validate has refused it already, and
// config.CheckLanes checks the lanes against the replicated collections.
func ConfiguredLanes(cfg *config.Config) []Lane {
	lanes, err := config.ParseLanes(cfg.Sink.Lanes)
	if err != nil {
		return nil
	}
	return LanesFromConfig(lanes)
}
