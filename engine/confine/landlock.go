package confine

import (
	"fmt"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Access rights of the rules (landlock(7)). The configuration handles every right the
// kernel knows (best effort down to its ABI), so whatever no rule grants is refused.
const (
	rightsRead = ll.AccessFSReadFile | ll.AccessFSReadDir
	rightsExec = rightsRead | ll.AccessFSExecute
	// rightsWrite: read-write trees; no execute, no device nodes.
	rightsWrite = rightsRead | ll.AccessFSWriteFile | ll.AccessFSTruncate | ll.AccessFSRemoveDir |
		ll.AccessFSRemoveFile | ll.AccessFSMakeDir | ll.AccessFSMakeReg | ll.AccessFSMakeSock |
		ll.AccessFSMakeFifo | ll.AccessFSMakeSym
	// rightsNull: /dev/null is opened for writing by os/exec (a child's unset stdout)
	// and with O_TRUNC by shell redirections.
	rightsNull = ll.AccessFSReadFile | ll.AccessFSWriteFile | ll.AccessFSTruncate
)

// LandlockABI is the kernel's Landlock ABI version, 0 without Landlock.
func LandlockABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// restrictFS enforces the file system rules of o on every thread.
func restrictFS(o Options) (LandlockReport, error) {
	rep := LandlockReport{ABI: LandlockABI()}
	if rep.ABI == 0 {
		rep.Reason = "the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, lsm= boot parameter)"
		return rep, nil
	}
	rw := landlock.PathAccess(rightsWrite, append([]string{o.StateDir}, o.ReadWrite...)...)
	if rep.ABI >= 2 {
		// Moving a file between two read-write directories (a rotated log, an evidence
		// bundle renamed into place) needs "refer"; on ABI 1 it is always refused, and
		// asking for it there would make go-landlock give up on Landlock altogether.
		rw = rw.WithRefer()
	}
	rules := []landlock.Rule{
		landlock.PathAccess(rightsRead, o.ReadOnly...),
		landlock.PathAccess(rightsExec, o.Execute...).IgnoreIfMissing(),
		rw,
		landlock.PathAccess(rightsNull, "/dev/null").IgnoreIfMissing(),
	}
	// RestrictPaths handles file system rights only: signals and abstract sockets stay
	// unscoped (reactions signal processes outside our domain) and so does the network.
	if err := landlock.V11.BestEffort().RestrictPaths(rules...); err != nil {
		return rep, fmt.Errorf("confine: landlock: %w", err)
	}
	rep.Applied = true
	return rep, nil
}
