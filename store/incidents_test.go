package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestIncidents(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	t0 := time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC)
	var added []Incident
	for i := 0; i < 4; i++ {
		in := Incident{Time: t0.Add(time.Duration(i) * time.Second), Recipe: fmt.Sprintf("r%d", i),
			EventUUID: fmt.Sprintf("uuid-%d", i), Importance: "high", Summary: "miner killed",
			Event: fmt.Sprintf(`{"n":%d}`, i)}
		id, err := s.AddIncident(ctx, in)
		if err != nil {
			t.Fatalf("AddIncident: %v", err)
		}
		in.ID = id
		added = append(added, in)
	}
	cases := []struct {
		limit int
		want  []int // indexes into added, newest first
	}{{0, []int{3, 2, 1, 0}}, {-1, []int{3, 2, 1, 0}}, {2, []int{3, 2}}, {10, []int{3, 2, 1, 0}}}
	for _, c := range cases {
		got, err := s.ListIncidents(ctx, c.limit)
		if err != nil || len(got) != len(c.want) {
			t.Fatalf("ListIncidents(%d) = %d, %v; want %d", c.limit, len(got), err, len(c.want))
		}
		for i, w := range c.want {
			g, a := got[i], added[w]
			if g.ID != a.ID || !g.Time.Equal(a.Time) || g.Recipe != a.Recipe || g.EventUUID != a.EventUUID ||
				g.Importance != a.Importance || g.Summary != a.Summary || g.Event != a.Event {
				t.Errorf("ListIncidents(%d)[%d] = %+v, want %+v", c.limit, i, g, a)
			}
		}
	}
}

func TestAddIncidentDefaultsAndRejects(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.AddIncident(ctx, Incident{Recipe: "r"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListIncidents(ctx, 1)
	if err != nil || len(got) != 1 || got[0].Event != "{}" || time.Since(got[0].Time) > time.Hour {
		t.Errorf("defaults = %+v, %v", got, err)
	}
	bad := map[string]Incident{
		"event not JSON": {Event: "{"},
		"long recipe":    {Recipe: strings.Repeat("r", MaxNameLen+1)},
		"huge summary":   {Summary: strings.Repeat("s", MaxValueLen+1)},
		"time range":     {Time: time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for name, in := range bad {
		if _, err := s.AddIncident(ctx, in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: AddIncident = %v, want ErrInvalid", name, err)
		}
	}
}
