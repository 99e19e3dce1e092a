package proc

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// A target pinned when its event was seen is that process or nothing: once it has exited, a
// different process found at its pid (the recycled pid, simulated by pointing the target at
// another process of ours) is never signalled.
func TestPinnedTargetNeverHitsAnotherProcess(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	l := NewLive(Floor{MinPID: 2})
	first := startVictim(t, copyBin(t, "/bin/sleep", "jpinned"), "60")
	fd, err := unix.PidfdOpen(first.pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	pinFile := os.NewFile(uintptr(fd), "pidfd")
	defer pinFile.Close()

	// While the pinned process lives, the pin reaches it.
	other := startVictim(t, copyBin(t, "/bin/sleep", "jbystander"), "60")
	if r, err := l.Kill(ctx, Target{PID: first.pid, Pin: pinFile}); err != nil || r != 0 {
		t.Fatalf("Kill of the pinned, live process = %d, %v; want 0", r, err)
	}
	first.waitDead(t)

	// It is gone; "its" pid now names another process: nothing is done to it.
	recycled := Target{PID: other.pid, Pin: pinFile}
	if err := l.Check(recycled); err == nil {
		t.Fatal("Check accepted a target whose pinned process is gone")
	}
	if r, err := l.Kill(ctx, recycled); err != nil || r != 1 {
		t.Fatalf("Kill through a dead pin = %d, %v; want 1 (nothing to do)", r, err)
	}
	if r, err := l.Freeze(ctx, recycled); err != nil || r != 1 {
		t.Fatalf("Freeze through a dead pin = %d, %v; want 1", r, err)
	}
	if !other.alive() {
		t.Fatal("the process at the recycled pid was hit")
	}
}
