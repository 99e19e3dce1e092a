package proc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// maxTreeMembers bounds the pidfds one KillTree holds (a fork bomb).
	maxTreeMembers = 1 << 16
	// maxTreePasses bounds the re-scans that catch children forked while
	// their parent was being stopped.
	maxTreePasses = 8
	// stopWait bounds the wait for one member to show as stopped before its
	// children are listed; a member stuck in D state must not stall the rest.
	stopWait = 100 * time.Millisecond
)

// TreeError reports the members of a tree that KillTree did not kill while
// it killed the rest. It wraps each reason, so errors.Is(err, ErrRefused)
// tells whether the floor protected some member.
type TreeError struct {
	Root   int
	Killed int
	Issues []error
}

func (e *TreeError) Error() string {
	msgs := make([]string, len(e.Issues))
	for i, err := range e.Issues {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("kill tree of pid %d: killed %d, not done: %s", e.Root, e.Killed, strings.Join(msgs, "; "))
}

func (e *TreeError) Unwrap() []error { return e.Issues }

// KillTree kills t and all its descendants. It first stops the tree
// top-down with SIGSTOP so that no member can fork a child that escapes,
// then sends SIGKILL to every member and waits, bounded by ctx, until they
// exit. It returns 1 when t was already gone. The floor applies to every
// member: a refused member is skipped together with its descendants (they
// belong to it, not to the tree we were asked to kill, and a member we may
// not stop could fork them away anyway); the result is then 0 with a
// *TreeError listing what was skipped.
func (l *Live) KillTree(ctx context.Context, t Target) (int, error) {
	root, err := l.open(t)
	if errors.Is(err, ErrGone) {
		return 1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("kill tree: %w", err)
	}
	if err := root.signal(unix.SIGSTOP); err != nil {
		root.close()
		if errors.Is(err, ErrGone) {
			return 1, nil
		}
		return -1, fmt.Errorf("kill tree: %w", err)
	}
	members := []*handle{root}
	defer func() {
		for _, h := range members {
			h.close()
		}
	}()

	issues := l.stopDescendants(ctx, &members)

	// Every member found is stopped: kill them all, even when ctx expired
	// during discovery, so that nothing is left stopped behind us.
	for _, h := range members {
		if err := h.signal(unix.SIGKILL); err != nil && !errors.Is(err, ErrGone) {
			issues = append(issues, err)
		}
	}
	killed := 0
	for i, h := range members {
		if err := h.waitExit(ctx); err != nil {
			if i == 0 {
				return -1, fmt.Errorf("kill tree: %w", err)
			}
			issues = append(issues, err)
			continue
		}
		killed++
	}
	if len(issues) > 0 {
		return 0, &TreeError{Root: t.PID, Killed: killed, Issues: issues}
	}
	return 0, nil
}

// stopDescendants walks the tree below the stopped members breadth-first,
// pinning and stopping each child it finds, and appends them to members.
// It returns what it could not stop.
func (l *Live) stopDescendants(ctx context.Context, members *[]*handle) []error {
	var issues []error
	seen := map[int]bool{(*members)[0].st.PID: true}
	for pass := 0; pass < maxTreePasses; pass++ {
		added := false
		for i := 0; i < len(*members); i++ {
			if err := ctx.Err(); err != nil {
				return append(issues, fmt.Errorf("descendants not all found: %w", err))
			}
			h := (*members)[i]
			if pass == 0 {
				// Children forked before the stop took effect are listed
				// only once the parent can fork no more.
				wctx, cancel := context.WithTimeout(ctx, stopWait)
				_ = h.waitStopped(wctx) // a slow stop is caught by the next pass
				cancel()
			}
			kids, err := children(h.st.PID)
			if err != nil {
				if !isGone(err) {
					issues = append(issues, fmt.Errorf("children of pid %d: %w", h.st.PID, err))
				}
				continue
			}
			for _, kid := range kids {
				if seen[kid] {
					continue
				}
				seen[kid] = true
				kh, err := l.openAs(Target{PID: kid}, h.st.PID)
				if errors.Is(err, ErrGone) {
					continue
				}
				if err != nil {
					issues = append(issues, fmt.Errorf("skipped pid %d (child of %d): %w", kid, h.st.PID, err))
					continue
				}
				if err := kh.signal(unix.SIGSTOP); err != nil {
					kh.close()
					if !errors.Is(err, ErrGone) {
						issues = append(issues, err)
					}
					continue
				}
				*members = append(*members, kh)
				added = true
				if len(*members) >= maxTreeMembers {
					return append(issues, fmt.Errorf("tree larger than %d processes", maxTreeMembers))
				}
			}
		}
		if !added {
			return issues
		}
	}
	return append(issues, fmt.Errorf("tree still growing after %d passes", maxTreePasses))
}
