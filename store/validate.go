package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Size limits on what callers (ultimately JavaScript recipes) may store.
const (
	MaxNameLen  = 256     // namespace, list, recipe, helper and similar names
	MaxKeyLen   = 4096    // key-value keys
	MaxValueLen = 1 << 20 // key-value values, list items, JSON documents
)

func checkName(field, v string) error {
	if v == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, field)
	}
	return checkLen(field, v, MaxNameLen)
}

func checkLen(field, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInvalid, field, len(v), max)
	}
	return nil
}

// checkJSON validates a JSON document; empty text becomes def. With
// wantArray the document must be an array.
func checkJSON(field, v, def string, wantArray bool) (string, error) {
	if v == "" {
		return def, nil
	}
	if err := checkLen(field, v, MaxValueLen); err != nil {
		return "", err
	}
	if !json.Valid([]byte(v)) {
		return "", fmt.Errorf("%w: %s is not valid JSON", ErrInvalid, field)
	}
	if wantArray && !strings.HasPrefix(strings.TrimLeft(v, " \t\r\n"), "[") {
		return "", fmt.Errorf("%w: %s is not a JSON array", ErrInvalid, field)
	}
	return v, nil
}

// toNanos converts t to Unix nanoseconds; the zero Time is 0. Times outside
// the int64 nanosecond range (years before 1678 or after 2261) are refused
// rather than silently wrapped.
func toNanos(field string, t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, nil
	}
	ns := t.UnixNano()
	if !time.Unix(0, ns).Equal(t) {
		return 0, fmt.Errorf("%w: %s %s out of range", ErrInvalid, field, t.Format(time.RFC3339))
	}
	return ns, nil
}

// fromNanos is the inverse of toNanos: 0 is the zero Time, others are UTC.
func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// sqlLimit maps "0 or less means no limit" to SQLite's LIMIT -1.
func sqlLimit(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}
