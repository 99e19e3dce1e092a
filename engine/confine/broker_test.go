package confine

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// brokerChild confines itself as the /proc broker does and tries what the broker must still do
// (read, readlink /proc of another user's process) and what its system call filter refuses.
func brokerChild() int {
	s, err := readSpec()
	if err != nil {
		emit(result{Err: "spec: " + err.Error()})
		return 1
	}
	existing := filepath.Join(s.StateDir, "existing")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		emit(result{Err: err.Error()})
		return 1
	}
	parkThreads(4)
	rep, err := ApplyBroker(BrokerKeep())
	if err != nil {
		emit(result{Report: rep, Err: err.Error()})
		return 1
	}
	parkThreads(4) // created after the filter: they inherit it
	th, err := Threads()
	if err != nil {
		emit(result{Report: rep, Err: err.Error()})
		return 1
	}
	p := map[string]string{}
	_, err = os.ReadFile(existing)
	p["read_file"] = errName(err)
	_, err = os.Readlink(fmt.Sprintf("/proc/%d/exe", s.OtherPID))
	p["proc_exe_other_user"] = errName(err)
	_, err = os.ReadFile(fmt.Sprintf("/proc/%d/environ", s.OtherPID))
	p["proc_environ_other_user"] = errName(err)
	_, err = os.OpenFile(existing, os.O_WRONLY, 0)
	p["open_write"] = errName(err)
	_, err = os.OpenFile(filepath.Join(s.StateDir, "new"), os.O_RDONLY|os.O_CREATE, 0o600)
	p["open_create"] = errName(err)
	_, err = os.OpenFile(existing, os.O_RDONLY|os.O_TRUNC, 0)
	p["open_truncate"] = errName(err)
	_, err = unix.Openat2(unix.AT_FDCWD, existing, &unix.OpenHow{Flags: unix.O_RDONLY})
	p["openat2"] = errName(err)
	p["unlink"] = errName(os.Remove(existing))
	p["mkdir"] = errName(os.Mkdir(filepath.Join(s.StateDir, "d"), 0o700))
	p["chmod"] = errName(os.Chmod(existing, 0o666))
	p["truncate"] = errName(os.Truncate(existing, 0))
	p["rename"] = errName(os.Rename(existing, existing+".2"))
	p["exec"] = errName(exec.Command("/bin/true").Run())
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fd)
	}
	p["socket"] = errName(err)
	p["kill_other"] = errName(unix.Kill(s.OtherPID, 0))
	p["kill_self"] = errName(unix.Kill(os.Getpid(), 0))
	p["ptrace_attach"] = errName(unix.PtraceAttach(s.OtherPID))
	if pfd, err := unix.PidfdOpen(s.OtherPID, 0); err != nil {
		p["pidfd_getfd"] = "pidfd_open: " + errName(err)
	} else {
		_, err = unix.PidfdGetfd(pfd, 0, 0)
		p["pidfd_getfd"] = errName(err)
		unix.Close(pfd)
	}
	_, err = unix.OpenByHandleAt(unix.AT_FDCWD, unix.NewFileHandle(1, make([]byte, 8)), unix.O_RDONLY)
	p["open_by_handle_at"] = errName(err)
	_, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, 0, 0)
	p["io_uring_setup"] = errName(syscallErr(e))
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	p["dumpable"] = fmt.Sprintf("%d %s", d, errName(err))
	emit(result{Report: rep, Threads: th, Probes: p})
	return 0
}

func syscallErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// TestApplyBroker checks the /proc broker's confinement on a child: it keeps BrokerCaps on
// every thread (those created after too), reads /proc of another user's process, and its
// system call filter refuses writes, exec, sockets, signals and reaching into other processes.
func TestApplyBroker(t *testing.T) {
	needRoot(t)
	state, outside := t.TempDir(), t.TempDir()
	other, _ := otherUser(t, outside)
	s := spec{StateDir: state, OtherPID: other.Process.Pid}
	cmd, _, sc, stderr := startChild(t, "broker", s)
	r := readResult(t, sc, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr)
	}
	keep := MaskOf(BrokerKeep()...)
	checkMasks(t, r, keep, ownStatus(t).Bnd&keep)
	for _, th := range r.Threads {
		if th.Seccomp != 2 {
			t.Errorf("thread %d: seccomp mode %d, want 2 (filter)", th.TID, th.Seccomp)
		}
	}
	want := map[string]string{
		"read_file": "ok", "proc_exe_other_user": "ok", "proc_environ_other_user": "ok", "kill_self": "ok",
		"open_write": "EPERM", "open_create": "EPERM", "open_truncate": "EPERM", "openat2": "EPERM",
		"unlink": "EPERM", "mkdir": "EPERM", "chmod": "EPERM", "truncate": "EPERM", "rename": "EPERM",
		"exec": "EPERM", "socket": "EPERM", "kill_other": "EPERM", "ptrace_attach": "EPERM",
		"pidfd_getfd": "EPERM", "open_by_handle_at": "EPERM", "io_uring_setup": "EPERM", "dumpable": "0 ok",
	}
	for probe, w := range want {
		if got := r.Probes[probe]; got != w {
			t.Errorf("%s: %s, want %s", probe, got, w)
		}
	}
	if _, err := os.Stat(filepath.Join(state, "existing")); err != nil {
		t.Errorf("the file the broker tried to remove: %v", err)
	}
}

// TestBrokerFilterShape: a system call of another ABI (int 0x80 on x86-64) would bypass a
// filter keyed on numbers, so the filter starts by killing the process for any other
// architecture, and ends by allowing what it did not refuse.
func TestBrokerFilterShape(t *testing.T) {
	prog, err := brokerFilter(4242)
	if err != nil {
		t.Skip(err)
	}
	if len(prog) < 10 || prog[0].K != offArch || prog[2].K != unix.SECCOMP_RET_KILL_PROCESS {
		t.Fatalf("filter does not start with the architecture check: %+v", prog[:3])
	}
	if last := prog[len(prog)-1]; last.Code != unix.BPF_RET|unix.BPF_K || last.K != unix.SECCOMP_RET_ALLOW {
		t.Fatalf("filter ends with %+v", last)
	}
	if _, err := brokerFilter(0); err == nil {
		t.Fatal("brokerFilter(0) accepted")
	}
}
