package sandbox

import (
	"context"
	"io/fs"
	"net/netip"
	"time"

	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox/proc"
)

// The seams between helpers and the system. The live world, the dry-run recorder and the
// deterministic test world each implement them; helpers never touch the system directly.

// Processes acts on processes. Check applies the safety floor without acting; Kill and
// KillTree apply it themselves (helpers do not Check before a kill) and answer a refusal
// with an error wrapping proc.ErrRefused.
type Processes interface {
	Check(t proc.Target) error
	Kill(ctx context.Context, t proc.Target) (int, error)
	KillTree(ctx context.Context, t proc.Target) (int, error)
	Freeze(ctx context.Context, t proc.Target) (int, error)
	Thaw(ctx context.Context, t proc.Target) (int, error)
}

// Network blocks and unblocks traffic.
type Network interface {
	BlockPrefix(ctx context.Context, p netip.Prefix, ttl time.Duration, recipe string) (int, error)
	UnblockPrefix(ctx context.Context, p netip.Prefix) (int, error)
	BlockDomain(ctx context.Context, domain string, recipe string) (int, error)
	UnblockDomain(ctx context.Context, domain string) (int, error)
}

// FileInfo is what Stat returns to a reaction.
type FileInfo struct {
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"mode"`
	ModTime time.Time   `json:"modTime"`
	IsDir   bool        `json:"isDir"`
}

// Files is file access that a grant cannot escape.
type Files interface {
	ReadFile(path string, max int64) ([]byte, error)
	WriteFile(path string, data []byte) error
	Stat(path string) (FileInfo, error)
	HashFile(path string) (string, error)
	MkdirTemp(dir, pattern string) (string, error)
	RemoveAll(path string) error
}

// Store is the per-recipe key-value store (namespace = recipe name).
type Store interface {
	Get(ctx context.Context, ns, key string) (string, bool, error)
	Set(ctx context.Context, ns, key, value string) error
	Delete(ctx context.Context, ns, key string) (bool, error)
	Keys(ctx context.Context, ns string) ([]string, error)
	Values(ctx context.Context, ns string) ([]string, error)
	Clear(ctx context.Context, ns string) (int, error)
	Size(ctx context.Context, ns string) (int, error)
	HasValue(ctx context.Context, ns, value string) (bool, error)
	Push(ctx context.Context, ns, list, value string) error
	Pop(ctx context.Context, ns, list string) (string, bool, error)
}

// Evidence collects /proc facts about a process into a bundle and returns its path.
type Evidence interface {
	Collect(ctx context.Context, pid int) (string, error)
}

// Power turns the machine off or panics the kernel. Only the live world implements it for real.
type Power interface {
	PowerOff(ctx context.Context) error
	Panic(ctx context.Context) error
}

// World is everything a reaction can affect.
type World struct {
	Proc     Processes
	Net      Network
	Files    Files
	Store    Store
	Evidence Evidence
	Power    Power
	TempRoot string // CreateTempDir makes directories here
}

// equips reports whether the world has the seam the helpers of capability c act through. A
// world built without one (a bench's, a tool's) answers those helpers with an error rather
// than failing inside the host call.
func (w World) equips(c string) bool {
	switch c {
	case policy.CapProcessKill, policy.CapProcessFreeze:
		return w.Proc != nil
	case policy.CapNetBlockIP, policy.CapNetBlockDomain:
		return w.Net != nil
	case policy.CapFSRead, policy.CapFSWrite, policy.CapTempdir:
		return w.Files != nil
	case policy.CapStore:
		return w.Store != nil
	case policy.CapEvidence:
		return w.Evidence != nil
	case policy.CapPower:
		return w.Power != nil
	}
	return true
}
