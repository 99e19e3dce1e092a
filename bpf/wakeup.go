package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
)

// MaxUrgentComms bounds the names SetExecWakeup accepts. urgent_comm holds
// twice as many so that a replacement can add every new name before it
// removes a stale one.
const MaxUrgentComms = 2048

// commKey mirrors struct comm_key of c/proc.bpf.c.
type commKey [taskCommLen]byte

// commKeyOf truncates a base name as the kernel does when it sets a task's
// comm at exec: the first TASK_COMM_LEN-1 bytes, NUL-padded.
func commKeyOf(name string) commKey {
	var k commKey
	copy(k[:taskCommLen-1], name)
	return k
}

// SetExecWakeup chooses which exec events wake the exec reader at once. A
// wake-up costs the exec'ing process 12-21 µs, which an exec storm pays on
// every exec; a batched event waits for the reader's next poll
// (Config.FlushInterval) instead, or until WakeupBytes are queued.
//
// With all set, every exec is urgent (the default until the first call).
// Otherwise an exec is urgent when its comm (the base name given to execve)
// or the name of the file the kernel loaded (a symbolic link's target, the
// file behind /proc/self/fd/N, a script's interpreter) is one of comms, or
// when it hit the kill-on-exec set; the rest are batched. comms are base
// names, compared on their first 15 bytes as the kernel stores comm (longer
// names also wake for the names sharing that prefix). Every exec is still
// reported: only its delivery may wait.
//
// The names replace the previous ones; during the switch the union of both
// wakes the reader, and on failure every exec does (failing towards
// latency, not loss of it).
func (s *Sensors) SetExecWakeup(all bool, comms []string) error {
	want := make(map[commKey]struct{}, len(comms))
	for i, c := range comms {
		switch {
		case c == "":
			return fmt.Errorf("exec wake-up name %d: empty", i)
		case strings.ContainsRune(c, '/'):
			return fmt.Errorf("exec wake-up name %d (%q): contains '/', give a base name", i, c)
		case strings.ContainsRune(c, 0):
			return fmt.Errorf("exec wake-up name %d (%q): contains a NUL byte", i, c)
		}
		want[commKeyOf(c)] = struct{}{}
	}
	if len(want) > MaxUrgentComms {
		return fmt.Errorf("exec wake-up names: %d distinct names, at most %d", len(want), MaxUrgentComms)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.urgentMap == nil || s.procCfg == nil {
		return errors.New("the proc sensor is not loaded")
	}
	if err := s.replaceUrgent(all, want); err != nil {
		if ferr := s.setExecWakeAll(true); ferr != nil {
			err = errors.Join(err, ferr)
		}
		return fmt.Errorf("set exec wake-up: %w", err)
	}
	return nil
}

// replaceUrgent switches to all (first, when waking more) and to want
// (adding before removing), so that no urgent exec goes unwoken meanwhile.
func (s *Sensors) replaceUrgent(all bool, want map[commKey]struct{}) error {
	if all {
		if err := s.setExecWakeAll(true); err != nil {
			return err
		}
	}
	for k := range want {
		if err := s.urgentMap.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add %q to urgent_comm: %w", cstring(k[:]), err)
		}
	}
	// The map, not a copy kept here, says what is stale: a failed earlier
	// call may have left names behind.
	var (
		stale []commKey
		k     commKey
		v     uint8
	)
	it := s.urgentMap.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate urgent_comm: %w", err)
	}
	for _, k := range stale {
		if err := s.urgentMap.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove %q from urgent_comm: %w", cstring(k[:]), err)
		}
	}
	if !all {
		return s.setExecWakeAll(false)
	}
	return nil
}

func (s *Sensors) setExecWakeAll(all bool) error {
	var c jcfg
	if err := s.procCfg.Lookup(uint32(0), &c); err != nil {
		return fmt.Errorf("read proc cfg: %w", err)
	}
	c.ExecWakeAll = 0
	if all {
		c.ExecWakeAll = 1
	}
	if err := s.procCfg.Update(uint32(0), c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write proc cfg: %w", err)
	}
	return nil
}
