package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/shalelog/shale/record"
	"github.com/shalelog/shale/tier/manifest"
)

// JSONHeader is a header in JSON form: the value as a string when it is
// valid UTF-8, else base64 in value_b64.
type JSONHeader struct {
	Key      string  `json:"key"`
	Value    *string `json:"value,omitempty"`
	ValueB64 *string `json:"value_b64,omitempty"`
}

// JSONRecord is a record in JSON form. Keys and values are strings when
// they are valid UTF-8, otherwise base64 in key_b64/value_b64; absent means
// null.
type JSONRecord struct {
	Partition *int32       `json:"partition,omitempty"`
	Offset    int64        `json:"offset"`
	Timestamp int64        `json:"timestamp"`
	Key       *string      `json:"key,omitempty"`
	KeyB64    *string      `json:"key_b64,omitempty"`
	Value     *string      `json:"value,omitempty"`
	ValueB64  *string      `json:"value_b64,omitempty"`
	Headers   []JSONHeader `json:"headers"`
}

// JSONReadResponse is a read in JSON form.
type JSONReadResponse struct {
	TopicID string       `json:"topic_id"`
	Start   int64        `json:"start_offset"`
	End     int64        `json:"end_offset"`
	Records []JSONRecord `json:"records"`
}

func split(b []byte) (str, b64 *string) {
	if b == nil {
		return nil, nil
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

func join(str, b64 *string) ([]byte, error) {
	switch {
	case str != nil && b64 != nil:
		return nil, errors.New("both a string and a base64 form given")
	case str != nil:
		return []byte(*str), nil
	case b64 != nil:
		return base64.StdEncoding.DecodeString(*b64)
	}
	return nil, nil
}

// ToJSON converts a record of partition p to its JSON form.
func ToJSON(p int32, r *record.Record) JSONRecord {
	j := JSONRecord{Partition: &p, Offset: r.Offset, Timestamp: r.Timestamp, Headers: []JSONHeader{}}
	j.Key, j.KeyB64 = split(r.Key)
	j.Value, j.ValueB64 = split(r.Value)
	for _, h := range r.Headers {
		jh := JSONHeader{Key: h.Key}
		jh.Value, jh.ValueB64 = split(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	return j
}

// FromJSON converts a JSON record back.
func FromJSON(j *JSONRecord) (record.Record, error) {
	r := record.Record{Offset: j.Offset, Timestamp: j.Timestamp}
	var err error
	if r.Key, err = join(j.Key, j.KeyB64); err != nil {
		return r, fmt.Errorf("key: %w", err)
	}
	if r.Value, err = join(j.Value, j.ValueB64); err != nil {
		return r, fmt.Errorf("value: %w", err)
	}
	for _, h := range j.Headers {
		v, err := join(h.Value, h.ValueB64)
		if err != nil {
			return r, fmt.Errorf("header %q: %w", h.Key, err)
		}
		r.Headers = append(r.Headers, record.Header{Key: h.Key, Value: v})
	}
	return r, nil
}

// JSONRecords is a JSON produce body. Key, value and header values are
// strings (stored as their UTF-8 bytes), or *_b64 strings of base64; a JSON
// object, array, number or boolean given as key or value is stored as its
// JSON text, as sent.
type JSONRecords struct {
	Records []JSONRecord `json:"records"`
}

// jsonIn is a record of a JSON produce body as decoded: numbers wide
// enough to range-check, and raw key and values so that any JSON value is
// accepted. Offset is accepted (and ignored) so that records read with
// format=json can be produced again.
type jsonIn struct {
	Partition *json.Number    `json:"partition"`
	Offset    *json.Number    `json:"offset"`
	Timestamp *json.Number    `json:"timestamp"`
	Key       json.RawMessage `json:"key"`
	KeyB64    *string         `json:"key_b64"`
	Value     json.RawMessage `json:"value"`
	ValueB64  *string         `json:"value_b64"`
	Headers   []jsonHeaderIn  `json:"headers"`
}

type jsonHeaderIn struct {
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
	ValueB64 *string         `json:"value_b64"`
}

const jsonHint = `send {"records":[{"key":"k","value":"v","headers":[{"key":"h","value":"x"}],"partition":0,"timestamp":1700000000000}]}; every field is optional, key_b64 and value_b64 take base64`

// rawBytes converts a raw JSON key or value: null or absent is nil, a
// string its bytes, anything else its JSON text. The raw message is the
// decoder's copy, so the result may alias it.
func rawBytes(raw json.RawMessage, b64 *string) ([]byte, error) {
	isNull := len(raw) == 0 || string(raw) == "null"
	switch {
	case !isNull && b64 != nil:
		return nil, errors.New("both a string and a base64 form given")
	case b64 != nil:
		return base64.StdEncoding.DecodeString(*b64)
	case isNull:
		return nil, nil
	case raw[0] != '"':
		return raw, nil
	case bytes.IndexByte(raw, '\\') < 0:
		return raw[1 : len(raw)-1 : len(raw)-1], nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return nil, err
	}
	return []byte(str), nil
}

// decodeJSONRecords decodes a JSON produce body of n records (as scanJSON
// counted them) record by record, so that no more than one record's
// intermediate form is held at once. Partitions given are checked against
// topic t; each record's Offset holds its partition, or -1.
func decodeJSONRecords(body []byte, n, maxHeaders int, t manifest.Topic) ([]record.Record, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	bad := func(format string, args ...any) error {
		return badRequest("decode records: %s; %s", fmt.Sprintf(format, args...), jsonHint)
	}
	delim := func(want json.Delim) error {
		tok, err := dec.Token()
		if err != nil {
			return bad("%v", err)
		}
		if d, ok := tok.(json.Delim); !ok || d != want {
			return bad("found %v where %q was expected", tok, want)
		}
		return nil
	}
	if err := delim('{'); err != nil {
		return nil, err
	}
	recs := make([]record.Record, 0, n)
	headers := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad("%v", err)
		}
		if tok != "records" {
			return nil, bad("unknown field %q", tok)
		}
		if err := delim('['); err != nil {
			return nil, err
		}
		for dec.More() {
			if len(recs) == n {
				// scanJSON counted fewer: only a body it misread gets here.
				return nil, bad("record %d: the body is not a single records array", len(recs))
			}
			var j jsonIn
			if err := dec.Decode(&j); err != nil {
				return nil, bad("record %d: %v", len(recs), err)
			}
			r, err := fromJSONIn(&j, t)
			if err != nil {
				if !errors.Is(err, manifest.ErrUnknownPartition) && !errors.Is(err, errBadRequest) {
					err = fmt.Errorf("%w: %w", errBadRequest, err)
				}
				return nil, fmt.Errorf("decode records: record %d: %w", len(recs), err)
			}
			if headers += len(r.Headers); headers > maxHeaders {
				return nil, tooLarge("more than %d headers in one request; send at most %d", maxHeaders, maxHeaders)
			}
			recs = append(recs, r)
		}
		if err := delim(']'); err != nil {
			return nil, err
		}
	}
	if err := delim('}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("data after the request object")
	}
	return recs, nil
}

func fromJSONIn(j *jsonIn, t manifest.Topic) (record.Record, error) {
	r := record.Record{Offset: -1}
	if j.Partition != nil {
		p, err := strconv.ParseInt(j.Partition.String(), 10, 64)
		switch {
		case err != nil || p < 0:
			return r, fmt.Errorf("%w: partition %s is not a partition number: topic %q has partitions 0-%d", errBadRequest, j.Partition, t.Name, t.Partitions-1)
		case p >= int64(t.Partitions):
			return r, fmt.Errorf("%w %d: topic %q has partitions 0-%d", manifest.ErrUnknownPartition, p, t.Name, t.Partitions-1)
		}
		r.Offset = p
	}
	if j.Timestamp != nil {
		ts, err := strconv.ParseInt(j.Timestamp.String(), 10, 64)
		if err != nil {
			return r, fmt.Errorf("timestamp %s is not an integer of milliseconds since the epoch", j.Timestamp)
		}
		r.Timestamp = ts
	}
	var err error
	if r.Key, err = rawBytes(j.Key, j.KeyB64); err != nil {
		return r, fmt.Errorf("key: %w", err)
	}
	if r.Value, err = rawBytes(j.Value, j.ValueB64); err != nil {
		return r, fmt.Errorf("value: %w", err)
	}
	if len(j.Headers) > record.MaxHeaders {
		return r, fmt.Errorf("%d headers: a record may have at most %d", len(j.Headers), record.MaxHeaders)
	}
	if len(j.Headers) > 0 {
		r.Headers = make([]record.Header, len(j.Headers))
		for i, h := range j.Headers {
			v, err := rawBytes(h.Value, h.ValueB64)
			if err != nil {
				return r, fmt.Errorf("header %q: %w", h.Key, err)
			}
			r.Headers[i] = record.Header{Key: h.Key, Value: v}
		}
	}
	return r, nil
}

// scanJSON counts, without decoding, the objects of a JSON produce body at
// the depth of records ({"records":[{…}]}: depth 3) and at the depth of
// headers (depth 5: an upper bound, as objects nested in values count too).
// For a valid body the first is its record count.
func scanJSON(b []byte) (records, headers int) {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if c == '{' && depth == 3 {
				records++
			} else if c == '{' && depth == 5 {
				headers++
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return records, headers
}
