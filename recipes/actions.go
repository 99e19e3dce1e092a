package recipes

import (
	"fmt"
	"sort"
	"strings"
)

// FileAction is one file operation an event can carry.
type FileAction string

// File actions in canonical order (the order of FileActions()).
const (
	ActFasync   FileAction = "fasync"
	ActFlock    FileAction = "flock"
	ActFsync    FileAction = "fsync"
	ActLlseek   FileAction = "llseek"
	ActMmap     FileAction = "mmap"
	ActOpen     FileAction = "open"
	ActRead     FileAction = "read"
	ActWrite    FileAction = "write"
	ActRename   FileAction = "rename"
	ActTruncate FileAction = "truncate"
	ActUnlink   FileAction = "unlink"
	ActCreate   FileAction = "create"
	ActClose    FileAction = "close"
	ActLink     FileAction = "link"
	ActExecve   FileAction = "execve"
)

// FileActions lists every file action in canonical order; Index gives the position.
func FileActions() []FileAction {
	return []FileAction{ActFasync, ActFlock, ActFsync, ActLlseek, ActMmap, ActOpen, ActRead,
		ActWrite, ActRename, ActTruncate, ActUnlink, ActCreate, ActClose, ActLink, ActExecve}
}

// Index returns the action's position in FileActions(), or -1 when it is not an action.
func (a FileAction) Index() int {
	switch a {
	case ActFasync:
		return 0
	case ActFlock:
		return 1
	case ActFsync:
		return 2
	case ActLlseek:
		return 3
	case ActMmap:
		return 4
	case ActOpen:
		return 5
	case ActRead:
		return 6
	case ActWrite:
		return 7
	case ActRename:
		return 8
	case ActTruncate:
		return 9
	case ActUnlink:
		return 10
	case ActCreate:
		return 11
	case ActClose:
		return 12
	case ActLink:
		return 13
	case ActExecve:
		return 14
	}
	return -1
}

// ExpandFileAction returns the actions a name stands for: itself for an action, the macro's
// actions for a macro (table of Jibril's recipes reference), false for an unknown name.
func ExpandFileAction(name string) ([]FileAction, bool) {
	switch name {
	case "any":
		return FileActions(), true
	case "open_related":
		return []FileAction{ActOpen, ActClose}, true
	case "read_related":
		return []FileAction{ActLlseek, ActMmap, ActRead}, true
	case "modify_related":
		return []FileAction{ActFsync, ActWrite, ActRename, ActTruncate, ActUnlink, ActCreate,
			ActLink}, true
	case "access_related":
		return []FileAction{ActFsync, ActLlseek, ActMmap, ActOpen, ActRead, ActWrite, ActRename,
			ActTruncate, ActUnlink, ActCreate, ActClose, ActLink}, true
	case "access_no_mmap_related":
		return []FileAction{ActFsync, ActLlseek, ActOpen, ActRead, ActWrite, ActRename,
			ActTruncate, ActUnlink, ActCreate, ActClose, ActLink}, true
	case "tamper_related":
		return []FileAction{ActRename, ActTruncate, ActUnlink, ActLink}, true
	}
	a := FileAction(name)
	if a.Index() >= 0 {
		return []FileAction{a}, true
	}
	return nil, false
}

// fileActionMacros lists the macro names, for error messages.
func fileActionMacros() []string {
	return []string{"any", "open_related", "read_related", "modify_related", "access_related",
		"access_no_mmap_related", "tamper_related"}
}

// expandFileActions expands names and macros into a sorted, deduplicated set.
func expandFileActions(names []string) ([]FileAction, error) {
	var mask uint32
	for _, n := range names {
		acts, ok := ExpandFileAction(n)
		if !ok {
			return nil, fmt.Errorf("unknown file action %q (want one of %s, or a macro: %s)", n,
				joinActions(FileActions()), strings.Join(fileActionMacros(), ", "))
		}
		for _, a := range acts {
			mask |= 1 << a.Index()
		}
	}
	return actionsOfMask(mask), nil
}

func actionsOfMask(mask uint32) []FileAction {
	var out []FileAction
	for i, a := range FileActions() {
		if mask&(1<<i) != 0 {
			out = append(out, a)
		}
	}
	return out
}

func joinActions(acts []FileAction) string {
	s := make([]string, len(acts))
	for i, a := range acts {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// flowActionIndex returns the position in FlowActions(), or -1.
func flowActionIndex(a FlowAction) int {
	for i, f := range FlowActions() {
		if f == a {
			return i
		}
	}
	return -1
}

func expandFlowActions(names []string) ([]FlowAction, error) {
	set := map[FlowAction]bool{}
	for _, n := range names {
		a := FlowAction(n)
		if flowActionIndex(a) < 0 {
			all := make([]string, 0, 10)
			for _, f := range FlowActions() {
				all = append(all, string(f))
			}
			return nil, fmt.Errorf("unknown flow action %q (want one of %s)", n,
				strings.Join(all, ", "))
		}
		set[a] = true
	}
	out := make([]FlowAction, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return flowActionIndex(out[i]) < flowActionIndex(out[j]) })
	return out, nil
}

// splitActions splits Jibril's one-string form "open|mmap, read" into names.
func splitActions(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool {
		return r == '|' || r == ',' || r == ' ' || r == '\t'
	})
	for i := range f {
		f[i] = strings.ToLower(f[i])
	}
	return f
}
