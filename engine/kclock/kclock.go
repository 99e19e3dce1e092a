// Package kclock reads the kernel's CLOCK_MONOTONIC without a system call per reading:
// BPF programs stamp events with it (bpf_ktime_get_ns, task start times), and converting
// each to wall time with clock_gettime(2) (a system call in x/sys/unix) cost the hot paths
// a system call per event, and woke the Go runtime's monitor from its deep sleep.
package kclock

import (
	"time"

	"golang.org/x/sys/unix"
)

// Mono carries CLOCK_MONOTONIC forward from one reading with the Go runtime's monotonic
// clock, which is the same clock read through the vDSO. The zero Mono reads the kernel
// every time.
type Mono struct {
	base     time.Time // with its monotonic reading
	baseMono int64     // CLOCK_MONOTONIC ns at base
}

// New reads CLOCK_MONOTONIC once.
func New() Mono {
	return Mono{base: time.Now(), baseMono: Read(unix.CLOCK_MONOTONIC)}
}

// Read is clock_gettime(2) of id in ns, 0 when it fails.
func Read(id int32) int64 {
	var ts unix.Timespec
	if unix.ClockGettime(id, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// WallOffset is CLOCK_REALTIME minus CLOCK_MONOTONIC now, in ns: a monotonic stamp plus the
// offset is its wall time. The wall clock is read at each call, so clock steps are followed.
func (m Mono) WallOffset() int64 {
	if m.base.IsZero() {
		return Read(unix.CLOCK_REALTIME) - Read(unix.CLOCK_MONOTONIC)
	}
	now := time.Now()
	return now.UnixNano() - (m.baseMono + int64(now.Sub(m.base)))
}

// IsZero reports whether m has not read the clock yet.
func (m Mono) IsZero() bool { return m.base.IsZero() }
