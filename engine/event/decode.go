package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Decode reads an event written by JSON (or by Jibril). It rejects anything but one JSON
// object, values of the wrong type, malformed timestamps, unknown event types and unknown
// file actions, with a one-line message naming the field. Unknown fields are ignored so that
// Jibril events with extra sections still load. When only base.background is present it is
// used as background.
func Decode(data []byte) (*Event, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("event: empty input")
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("event: expected a JSON object, got %s", jsonKind(trimmed[0]))
	}
	var w wireIn
	if err := json.Unmarshal(trimmed, &w); err != nil {
		return nil, decodeError(err)
	}
	e := &Event{
		UUID: w.UUID, Timestamp: w.Timestamp, EventType: w.EventType, Note: w.Note,
		Metadata: w.Metadata, Process: w.Process, File: w.File, Flow: w.Flow, Scenario: w.Scenario,
	}
	switch {
	case w.Background != nil:
		e.Background = *w.Background
	case len(w.Base) > 0 && string(w.Base) != "null":
		var base struct {
			Background *Background `json:"background"`
		}
		if err := json.Unmarshal(w.Base, &base); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				te.Field = strings.TrimSuffix("base."+te.Field, ".")
			}
			return nil, decodeError(err)
		}
		if base.Background != nil {
			e.Background = *base.Background
		}
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return e, nil
}

// wireIn is the decoding form: like wire, with typed backgrounds.
type wireIn struct {
	UUID       string          `json:"uuid"`
	Timestamp  string          `json:"timestamp"`
	EventType  string          `json:"event_type"`
	Note       string          `json:"note"`
	Metadata   Metadata        `json:"metadata"`
	Process    Process         `json:"process"`
	File       *File           `json:"file"`
	Flow       *Flow           `json:"flow"`
	Background *Background     `json:"background"`
	Base       json.RawMessage `json:"base"` // read only when background is absent
	Scenario   []Scenario      `json:"scenario"`
}

func (e *Event) check() error {
	switch e.EventType {
	case "", TypeFileAccess, TypeExecution, TypeNetworkPeer:
	default:
		return fmt.Errorf("event: field event_type: unknown value %q (want %s, %s or %s)",
			e.EventType, TypeFileAccess, TypeExecution, TypeNetworkPeer)
	}
	stamps := []struct{ field, v string }{
		{"timestamp", e.Timestamp}, {"process.start", e.Process.Start}, {"process.exit", e.Process.Exit},
	}
	for i, a := range e.Background.Ancestry {
		stamps = append(stamps, struct{ field, v string }{fmt.Sprintf("background.ancestry[%d].start", i), a.Start})
	}
	for _, s := range stamps {
		if s.v == "" {
			continue
		}
		if _, err := ParseStamp(s.v); err != nil {
			return fmt.Errorf("event: field %s: %q is not an RFC 3339 timestamp", s.field, s.v)
		}
	}
	if e.File != nil {
		for i, a := range e.File.Actions {
			if e.File.flag(a) == nil {
				return fmt.Errorf("event: field file.actions[%d]: unknown action %q", i, a)
			}
		}
		// The list and the booleans may disagree in a hand-written fixture: take the union.
		var union []string
		for _, a := range ActionNames() {
			if e.File.Has(a) {
				union = append(union, a)
			}
		}
		e.File.SetActions(union...)
	}
	return nil
}

func jsonKind(c byte) string {
	switch {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	}
	return fmt.Sprintf("invalid JSON (starts with %q)", c)
}

func decodeError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("event: invalid JSON at byte %d: %s", se.Offset, se.Error())
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Errorf("event: field %s: expected %s, got %s", field, goKind(te.Type), te.Value)
	}
	return fmt.Errorf("event: %w", err)
}

// goKind names the JSON a Go type wants.
func goKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("an integer (%d-bit)", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a non-negative integer (%d-bit)", t.Bits())
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return goKind(t.Elem())
	}
	return t.String()
}
