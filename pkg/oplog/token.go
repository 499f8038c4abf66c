package oplog

import (
	"encoding/hex"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
)

// TokenTime returns the cluster time a change-stream resume token stands
// for. MongoDB's tokens (v1 and later, and pkg/mongotest's) are a _data hex
// string beginning with the KeyString timestamp type byte 0x82 and the
// big-endian seconds and increment. ok is false for any other shape.
func TokenTime(token bson.Raw) (ct event.ClusterTime, ok bool) {
	data, isStr := token.Lookup("_data").StringValueOK()
	if !isStr || len(data) < 18 {
		return ct, false
	}
	b, err := hex.DecodeString(data[:18])
	if err != nil || b[0] != 0x82 {
		return ct, false
	}
	ct.T = uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
	ct.I = uint32(b[5])<<24 | uint32(b[6])<<16 | uint32(b[7])<<8 | uint32(b[8])
	return ct, true
}
