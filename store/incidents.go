package store

import (
	"context"
	"fmt"
	"time"
)

// Incident is a detection and what was done about it.
type Incident struct {
	ID                                            int64
	Time                                          time.Time
	Recipe, EventUUID, Importance, Summary, Event string /*JSON*/
}

func normalizeIncident(in Incident) (Incident, int64, error) {
	if in.Time.IsZero() {
		in.Time = time.Now()
	}
	ns, err := toNanos("time", in.Time)
	if err != nil {
		return in, 0, err
	}
	for _, f := range []struct{ name, v string }{
		{"recipe", in.Recipe}, {"event uuid", in.EventUUID}, {"importance", in.Importance},
	} {
		if err := checkLen(f.name, f.v, MaxNameLen); err != nil {
			return in, 0, err
		}
	}
	if err := checkLen("summary", in.Summary, MaxValueLen); err != nil {
		return in, 0, err
	}
	in.Event, err = checkJSON("event", in.Event, "{}", false)
	return in, ns, err
}

// AddIncident stores in (ID is ignored; a zero Time becomes now, an empty
// Event "{}") and returns its new ID.
func (s *Store) AddIncident(ctx context.Context, in Incident) (int64, error) {
	in, ns, err := normalizeIncident(in)
	if err != nil {
		return 0, fmt.Errorf("store: add incident: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO incidents
		(time_ns, recipe, event_uuid, importance, summary, event) VALUES (?, ?, ?, ?, ?, ?)`,
		ns, in.Recipe, in.EventUUID, in.Importance, in.Summary, in.Event)
	if err != nil {
		return 0, fmt.Errorf("store: add incident: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("store: add incident: %w", err)
	}
	return id, nil
}

// ListIncidents returns up to limit incidents, newest first (limit 0 or
// less: all).
func (s *Store) ListIncidents(ctx context.Context, limit int) ([]Incident, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, time_ns, recipe, event_uuid, importance,
		summary, event FROM incidents ORDER BY id DESC LIMIT ?`, sqlLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list incidents: %w", err)
	}
	defer rows.Close()
	out := []Incident{}
	for rows.Next() {
		var in Incident
		var ns int64
		if err := rows.Scan(&in.ID, &ns, &in.Recipe, &in.EventUUID, &in.Importance,
			&in.Summary, &in.Event); err != nil {
			return nil, fmt.Errorf("store: list incidents: %w", err)
		}
		in.Time = fromNanos(ns)
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list incidents: %w", err)
	}
	return out, nil
}
