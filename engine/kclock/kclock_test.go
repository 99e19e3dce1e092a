package kclock

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The carried clock must agree with clock_gettime, a while after its reading.
func TestWallOffset(t *testing.T) {
	m := New()
	time.Sleep(30 * time.Millisecond)
	for _, tc := range []struct {
		name string
		m    Mono
	}{{"carried", m}, {"zero: read every time", Mono{}}} {
		// A preemption between the reads skews one comparison; it cannot skew ten in a row.
		var d time.Duration
		for try := 0; try < 10; try++ {
			got := tc.m.WallOffset()
			want := Read(unix.CLOCK_REALTIME) - Read(unix.CLOCK_MONOTONIC)
			if d = time.Duration(got - want); d >= -100*time.Microsecond && d <= 100*time.Microsecond {
				break
			}
		}
		if d < -100*time.Microsecond || d > 100*time.Microsecond {
			t.Errorf("%s: offset off by %v from clock_gettime's, ten times", tc.name, d)
		}
	}
}
