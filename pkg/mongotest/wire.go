package mongotest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Wire protocol opcodes understood by the server.
const (
	opReply      int32 = 1
	opQuery      int32 = 2004
	opCompressed int32 = 2012
	opMsg        int32 = 2013
)

// OP_MSG flag bits.
const (
	msgChecksumPresent uint32 = 1 << 0
	msgMoreToCome      uint32 = 1 << 1
)

// maxMessageSize is the largest message the server accepts (and advertises as
// maxMessageSizeBytes).
const maxMessageSize = 48000000

// maxBSONSize is the advertised maxBsonObjectSize.
const maxBSONSize = 16 * 1024 * 1024

// header is a wire protocol message header.
type header struct {
	length     int32
	requestID  int32
	responseTo int32
	opCode     int32
}

// message is one decoded client request.
type message struct {
	hdr header
	// body is the command document (OP_MSG kind 0 section, or the OP_QUERY
	// query document with any $query wrapper removed).
	body bsoncore.Document
	// seqs holds the OP_MSG kind 1 document sequences by identifier.
	seqs map[string][]bsoncore.Document
	// moreToCome is set when the client does not expect a reply.
	moreToCome bool
	// legacy is set for OP_QUERY requests, which are answered with OP_REPLY.
	legacy bool
	// fullCollectionName of an OP_QUERY ("admin.$cmd").
	fullCollectionName string
}

var errBadMessage = errors.New("mongotest: malformed wire message")

// readMessage reads and decodes one message from r.
func readMessage(r io.Reader, buf []byte) (*message, []byte, error) {
	var hb [16]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return nil, buf, err
	}
	h := header{
		length:     int32(binary.LittleEndian.Uint32(hb[0:])),
		requestID:  int32(binary.LittleEndian.Uint32(hb[4:])),
		responseTo: int32(binary.LittleEndian.Uint32(hb[8:])),
		opCode:     int32(binary.LittleEndian.Uint32(hb[12:])),
	}
	if h.length < 16 || h.length > maxMessageSize {
		return nil, buf, fmt.Errorf("%w: length %d", errBadMessage, h.length)
	}
	n := int(h.length) - 16
	// Each message gets its own buffer: documents handed out below alias it
	// and may be retained (e.g. inserted documents are stored as is).
	buf = make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, buf, err
	}
	m := &message{hdr: h}
	switch h.opCode {
	case opMsg:
		if err := decodeOpMsg(m, buf); err != nil {
			return nil, buf, err
		}
	case opQuery:
		if err := decodeOpQuery(m, buf); err != nil {
			return nil, buf, err
		}
	case opCompressed:
		return nil, buf, fmt.Errorf("%w: compression is not supported", errBadMessage)
	default:
		return nil, buf, fmt.Errorf("%w: unsupported opcode %d", errBadMessage, h.opCode)
	}
	return m, buf, nil
}

func decodeOpMsg(m *message, b []byte) error {
	if len(b) < 4 {
		return errBadMessage
	}
	flags := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if flags&msgChecksumPresent != 0 {
		if len(b) < 4 {
			return errBadMessage
		}
		b = b[:len(b)-4]
	}
	m.moreToCome = flags&msgMoreToCome != 0
	for len(b) > 0 {
		kind := b[0]
		b = b[1:]
		switch kind {
		case 0:
			doc, rest, ok := bsoncore.ReadDocument(b)
			if !ok {
				return fmt.Errorf("%w: bad body section", errBadMessage)
			}
			if err := doc.Validate(); err != nil {
				return fmt.Errorf("%w: %v", errBadMessage, err)
			}
			m.body = doc
			b = rest
		case 1:
			if len(b) < 4 {
				return errBadMessage
			}
			size := int(int32(binary.LittleEndian.Uint32(b)))
			if size < 5 || size > len(b) {
				return fmt.Errorf("%w: bad document sequence size", errBadMessage)
			}
			sec := b[4:size]
			b = b[size:]
			i := 0
			for i < len(sec) && sec[i] != 0 {
				i++
			}
			if i >= len(sec) {
				return fmt.Errorf("%w: bad document sequence identifier", errBadMessage)
			}
			id := string(sec[:i])
			sec = sec[i+1:]
			var docs []bsoncore.Document
			for len(sec) > 0 {
				doc, rest, ok := bsoncore.ReadDocument(sec)
				if !ok {
					return fmt.Errorf("%w: bad document in sequence %q", errBadMessage, id)
				}
				docs = append(docs, doc)
				sec = rest
			}
			if m.seqs == nil {
				m.seqs = make(map[string][]bsoncore.Document)
			}
			m.seqs[id] = append(m.seqs[id], docs...)
		default:
			return fmt.Errorf("%w: unknown section kind %d", errBadMessage, kind)
		}
	}
	if m.body == nil {
		return fmt.Errorf("%w: OP_MSG without body", errBadMessage)
	}
	return nil
}

func decodeOpQuery(m *message, b []byte) error {
	m.legacy = true
	if len(b) < 4 {
		return errBadMessage
	}
	b = b[4:] // flags
	i := 0
	for i < len(b) && b[i] != 0 {
		i++
	}
	if i >= len(b) {
		return errBadMessage
	}
	m.fullCollectionName = string(b[:i])
	b = b[i+1:]
	if len(b) < 8 {
		return errBadMessage
	}
	b = b[8:] // numberToSkip, numberToReturn
	doc, _, ok := bsoncore.ReadDocument(b)
	if !ok {
		return fmt.Errorf("%w: bad OP_QUERY document", errBadMessage)
	}
	if err := doc.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errBadMessage, err)
	}
	if q, err := doc.LookupErr("$query"); err == nil {
		if qd, ok := q.DocumentOK(); ok {
			doc = qd
		}
	}
	m.body = doc
	return nil
}

// appendHeader appends a header with a placeholder length.
func appendHeader(dst []byte, requestID, responseTo, opCode int32) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(requestID))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(responseTo))
	return binary.LittleEndian.AppendUint32(dst, uint32(opCode))
}

// encodeOpMsg encodes doc as an OP_MSG reply with a single kind 0 section.
// moreToCome is never set: every request gets exactly one reply.
func encodeOpMsg(requestID, responseTo int32, doc []byte) []byte {
	out := make([]byte, 0, 21+len(doc))
	out = appendHeader(out, requestID, responseTo, opMsg)
	out = binary.LittleEndian.AppendUint32(out, 0) // flags
	out = append(out, 0)                           // kind 0
	out = append(out, doc...)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out
}

// encodeOpReply encodes doc as an OP_REPLY (the answer to an OP_QUERY).
func encodeOpReply(requestID, responseTo int32, doc []byte) []byte {
	out := make([]byte, 0, 36+len(doc))
	out = appendHeader(out, requestID, responseTo, opReply)
	out = binary.LittleEndian.AppendUint32(out, 8) // responseFlags: AwaitCapable
	out = binary.LittleEndian.AppendUint64(out, 0) // cursorID
	out = binary.LittleEndian.AppendUint32(out, 0) // startingFrom
	out = binary.LittleEndian.AppendUint32(out, 1) // numberReturned
	out = append(out, doc...)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out
}
