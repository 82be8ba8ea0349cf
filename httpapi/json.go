package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/shalelog/shale/record"
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

// JSONRecords is a JSON produce body.
type JSONRecords struct {
	Records []JSONRecord `json:"records"`
}

func decodeJSONRecords(body []byte) ([]record.Record, []int32, error) {
	var req JSONRecords
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, err
	}
	recs := make([]record.Record, len(req.Records))
	parts := make([]int32, len(req.Records))
	for i := range req.Records {
		var err error
		if recs[i], err = FromJSON(&req.Records[i]); err != nil {
			return nil, nil, fmt.Errorf("record %d: %w", i, err)
		}
		parts[i] = -1
		if p := req.Records[i].Partition; p != nil {
			parts[i] = *p
		}
	}
	return recs, parts, nil
}
