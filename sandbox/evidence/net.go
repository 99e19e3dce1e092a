package evidence

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
)

// tcpState names the st column of /proc/net/tcp (include/net/tcp_states.h).
func tcpState(st uint64) string {
	names := [...]string{
		1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
		7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
	}
	if st < uint64(len(names)) {
		return names[st]
	}
	return ""
}

// socketInode extracts N from a descriptor target "socket:[N]".
func socketInode(target string) (uint64, bool) {
	s, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(s, 10, 64)
	return ino, err == nil
}

// parseTable parses /proc/PID/net/<table>. Lines it cannot parse are
// skipped: the table is kernel output, but it is read as hostile input.
func parseTable(table string, data []byte) []Socket {
	var out []Socket
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		line := sc.Text()
		f := strings.Fields(line)
		var s Socket
		var ok bool
		if table == "unix" {
			s, ok = parseUnix(f)
		} else {
			s, ok = parseInet(table, f)
		}
		if ok {
			s.Proto = table
			s.Line = strings.TrimSpace(line)
			out = append(out, s)
		}
	}
	return out
}

// parseInet reads a tcp/udp line: sl local remote st queues timer retr uid
// timeout inode ...
func parseInet(table string, f []string) (Socket, bool) {
	if len(f) < 10 {
		return Socket{}, false
	}
	ino, err := strconv.ParseUint(f[9], 10, 64)
	if err != nil {
		return Socket{}, false
	}
	s := Socket{Inode: ino, Local: decodeAddr(f[1]), Remote: decodeAddr(f[2])}
	if st, err := strconv.ParseUint(f[3], 16, 8); err == nil {
		s.State = tcpState(st)
		if strings.HasPrefix(table, "udp") && st == 7 {
			s.State = "UNCONNECTED"
		}
	}
	return s, true
}

// parseUnix reads a unix line: Num RefCount Protocol Flags Type St Inode [Path].
func parseUnix(f []string) (Socket, bool) {
	if len(f) < 7 {
		return Socket{}, false
	}
	ino, err := strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		return Socket{}, false
	}
	return Socket{Inode: ino, Path: strings.Join(f[7:], " ")}, true
}

// decodeAddr turns "0100007F:1F90" into "127.0.0.1:8080". The kernel
// prints each 32-bit word of the address in host byte order.
func decodeAddr(s string) string {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return ""
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return ""
	}
	raw, err := hex.DecodeString(host)
	if err != nil || len(raw) != 4 && len(raw) != 16 {
		return ""
	}
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr.Unmap(), uint16(p)).String()
}

// startTicks returns field 22 of a stat line, or 0. The comm field may hold
// ")" so the fields are counted from the last one.
func startTicks(stat []byte) uint64 {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
