package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// sdNotifier speaks systemd's notification protocol (sd_notify(3)) for Type=notify units:
// one datagram per message on the unix socket named by $NOTIFY_SOCKET ("@name" is an
// abstract socket). Without $NOTIFY_SOCKET every method does nothing.
type sdNotifier struct {
	conn     *net.UnixConn
	watchdog time.Duration // $WATCHDOG_USEC, when it is meant for this process
}

// notifyEnv are the variables the protocol uses; the daemon removes them from its
// environment once read, so that shell reactions cannot speak for it.
func notifyEnv() []string { return []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} }

// newSDNotifier connects to the socket getenv names. The connection is made at once,
// before the daemon confines itself. pid is this process's (WATCHDOG_PID must match).
func newSDNotifier(getenv func(string) string, pid int) (*sdNotifier, error) {
	n := &sdNotifier{}
	addr := getenv("NOTIFY_SOCKET")
	if addr == "" {
		return n, nil
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: not a socket path or an abstract name", addr)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	n.conn = c
	if us := getenv("WATCHDOG_USEC"); us != "" {
		v, err := strconv.ParseInt(us, 10, 64)
		if err != nil || v <= 0 {
			c.Close()
			return nil, fmt.Errorf("WATCHDOG_USEC %q: not a positive number", us)
		}
		if p := getenv("WATCHDOG_PID"); p == "" || p == strconv.Itoa(pid) {
			n.watchdog = time.Duration(v) * time.Microsecond
		}
	}
	return n, nil
}

func (n *sdNotifier) send(msg string) error {
	if n == nil || n.conn == nil {
		return nil
	}
	_ = n.conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := n.conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}

// Ready says start-up is over; status is shown by systemctl status.
func (n *sdNotifier) Ready(status string) error {
	return n.send("READY=1\nSTATUS=" + oneLineStatus(status) + "\n")
}

// Stopping says the daemon is shutting down.
func (n *sdNotifier) Stopping() error { return n.send("STOPPING=1\n") }

// WatchdogInterval is WatchdogSec, zero when systemd does not watch this process.
func (n *sdNotifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// KeepAlive sends WATCHDOG=1 at half the watchdog interval while alive says so, until
// ctx ends; when alive stays false, systemd's watchdog fires and restarts the daemon.
func (n *sdNotifier) KeepAlive(ctx context.Context, alive func() bool) {
	if n.WatchdogInterval() <= 0 {
		return
	}
	t := time.NewTicker(n.watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive() {
				_ = n.send("WATCHDOG=1\n")
			}
		}
	}
}

// Close releases the socket.
func (n *sdNotifier) Close() error {
	if n == nil || n.conn == nil {
		return nil
	}
	return n.conn.Close()
}

func oneLineStatus(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
