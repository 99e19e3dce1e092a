package procfs

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// BrokerFD is the broker's end of the socket pair in the broker process (exec.Cmd.ExtraFiles[0]).
const BrokerFD = 3

// ServeBroker is the broker process: it refuses to run unless fd is a SOCK_SEQPACKET unix
// socket whose peer is its parent (the daemon hands it over at exec), then confines itself
// (confine: capabilities, no_new_privs, system call filter; it must not Landlock, or /proc of
// other processes would be refused to the broker too), and answers the daemon's requests one at
// a time until the daemon closes its end (nil). Requests are hostile input: see decodeRequest
// and Ref.check; a refused request gets a refusal, never a crash.
func ServeBroker(fd int, confine func() error) error {
	if err := checkSocket(fd); err != nil {
		return fmt.Errorf("proc broker: %w", err)
	}
	// Dies with the daemon even if started without it (exec.Cmd sets it, before exec, on the
	// thread that becomes ours).
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("proc broker: set the parent-death signal: %w", err)
	}
	if err := checkPeer(fd); err != nil { // again: the parent may have died before the prctl
		return fmt.Errorf("proc broker: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := confine(); err != nil {
		return fmt.Errorf("proc broker: confine: %w", err)
	}
	return serve(fd)
}

// checkSocket accepts only the socket the parent handed over: a unix SOCK_SEQPACKET socket
// connected to the parent process.
func checkSocket(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("descriptor %d: %w (run only by the daemon)", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("descriptor %d is not a socket (run only by the daemon)", fd)
	}
	if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || d != unix.AF_UNIX {
		return fmt.Errorf("descriptor %d is not a unix socket", fd)
	}
	if ty, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || ty != unix.SOCK_SEQPACKET {
		return fmt.Errorf("descriptor %d is not a SOCK_SEQPACKET socket", fd)
	}
	return checkPeer(fd)
}

func checkPeer(fd int) error {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return fmt.Errorf("descriptor %d: peer credentials: %w", fd, err)
	}
	if pp := unix.Getppid(); int(cred.Pid) != pp || pp <= 1 {
		return fmt.Errorf("descriptor %d is connected to pid %d, not to the parent (%d)", fd, cred.Pid, pp)
	}
	return nil
}

// serve answers requests until the peer closes its end.
func serve(fd int) error {
	buf := make([]byte, requestSize)
	for {
		// MSG_TRUNC: n is the message's real length, so an oversize request is seen as such.
		// No room for control data: descriptors sent along are closed by the kernel (MSG_CTRUNC).
		n, _, flags, _, err := unix.Recvmsg(fd, buf, nil, unix.MSG_TRUNC|unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("proc broker: receive: %w", err)
		}
		if n == 0 {
			return nil // the daemon closed its end
		}
		var q request
		var qerr error
		switch {
		case n > len(buf):
			q, _ = decodeRequest(buf)
			qerr = fmt.Errorf("%w: a request is %d bytes, got %d", ErrRefused, requestSize, n)
		case flags&unix.MSG_CTRUNC != 0:
			q, _ = decodeRequest(buf[:n])
			qerr = fmt.Errorf("%w: requests carry no descriptors", ErrRefused)
		default:
			q, qerr = decodeRequest(buf[:n])
		}
		rep, file := answer(q, qerr)
		var rights []byte
		if file >= 0 {
			rights = unix.UnixRights(file)
		}
		err = unix.Sendmsg(fd, rep.encode(), rights, nil, unix.MSG_NOSIGNAL)
		if file >= 0 {
			unix.Close(file)
		}
		if err != nil {
			return fmt.Errorf("proc broker: reply: %w", err)
		}
	}
}

// answer performs one request; file is a descriptor to send along, -1 for none.
func answer(q request, qerr error) (rep reply, file int) {
	rep, file = reply{id: q.id, next: -1}, -1
	if qerr != nil {
		reason := qerr.Error()
		if len(reason) > maxReason {
			reason = reason[:maxReason]
		}
		rep.status, rep.payload = statusRefused, []byte(reason)
		return rep, -1
	}
	p := q.ref.path("/proc")
	var err error
	switch q.op {
	case opReadlink:
		var target string
		if target, err = readlink(p); err == nil {
			rep.payload = []byte(target)
		}
	case opStat:
		var fi FileInfo
		if fi, err = stat(p); err == nil {
			rep.payload = encodeStat(fi)
		}
	case opOpen:
		file, err = openItem(p, q.ref.Item)
	case opFDs:
		var links []FDLink
		var next int
		if links, next, err = listFDs(p, int(q.ref.Arg), MaxFDs, maxReply-replyHeader); err == nil {
			rep.next = int32(next)
			for _, l := range links {
				rep.payload = appendFDEntry(rep.payload, l.FD, uint16(errnoOf(l.Err)), l.Target)
			}
		}
	}
	if err != nil {
		rep.status, rep.code, rep.payload, rep.next = statusErrno, uint32(errnoOf(err)), nil, -1
	}
	return rep, file
}

// errnoOf is the errno behind err, EIO when there is none.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	if errors.As(err, &en) && en != 0 {
		return en
	}
	return syscall.EIO
}
