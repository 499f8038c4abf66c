-- 00017 dead_letter_stream: a dead letter names the stream its stream_seq
-- belongs to.
--
-- With sink lanes (sink.lanes) every lane has a stream of its own,
-- <nats.stream>_<lane>, each numbering its messages from 1: a sequence
-- alone no longer says which message it was. Entries recorded before this
-- migration keep stream NULL, which means the default stream (nats.stream):
-- the only one there was before lanes.

-- +goose Up
ALTER TABLE cdc.dead_letters ADD COLUMN stream text;
COMMENT ON COLUMN cdc.dead_letters.stream IS 'JetStream stream that stream_seq is a sequence of (a lane''s <nats.stream>_<lane>, or nats.stream); NULL: the default stream nats.stream (entries recorded before streams were), or no stream (stream_seq NULL).';

-- +goose Down
ALTER TABLE cdc.dead_letters DROP COLUMN stream;
