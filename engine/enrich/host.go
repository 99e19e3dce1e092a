package enrich

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/engine/event"
)

// Bounds on files read for enrichment.
const (
	maxCgroupFile  = 8 << 10
	maxMountinfo   = 1 << 20
	maxOSRelease   = 16 << 10
	maxRouteFile   = 64 << 10
	maxCgroupCache = 4096
	maxCgroupPath  = 4096
)

func readBounded(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

// cgroupResolver maps cgroup ids (from the sensors) to cgroup v2 paths. A path read from
// /proc/PID/cgroup is cached under the id only when the directory of that path in the
// cgroup2 mount has the id as inode (the process may have moved meanwhile).
type cgroupResolver struct {
	procRoot string
	mount    string // cgroup2 mount point, "" when unknown

	mu   sync.Mutex
	byID map[uint64]string
}

func newCgroupResolver(procRoot string) *cgroupResolver {
	r := &cgroupResolver{procRoot: procRoot, byID: map[uint64]string{}}
	if b, err := readBounded(procRoot+"/self/mountinfo", maxMountinfo); err == nil {
		r.mount = cgroup2Mount(b)
	}
	return r
}

// cgroup2Mount finds the mount point of the cgroup2 file system in a mountinfo file
// (/sys/fs/cgroup on pure v2 hosts, /sys/fs/cgroup/unified on hybrid ones).
func cgroup2Mount(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		if fs := strings.Fields(post); len(fs) == 0 || fs[0] != "cgroup2" {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		return unescapeMount(f[4])
	}
	return ""
}

// unescapeMount decodes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (r *cgroupResolver) path(pid int32, id uint64) string {
	if id != 0 {
		r.mu.Lock()
		p, ok := r.byID[id]
		r.mu.Unlock()
		if ok {
			return p
		}
	}
	if pid <= 0 {
		return ""
	}
	b, err := readBounded(r.procRoot+"/"+strconv.FormatInt(int64(pid), 10)+"/cgroup", maxCgroupFile)
	if err != nil {
		return ""
	}
	p := cgroupV2Path(b)
	if p == "" || id == 0 || r.mount == "" {
		return p
	}
	var st unix.Stat_t
	if unix.Stat(r.mount+p, &st) == nil && st.Ino == id {
		r.mu.Lock()
		if len(r.byID) >= maxCgroupCache {
			clear(r.byID)
		}
		r.byID[id] = p
		r.mu.Unlock()
	}
	return p
}

// cgroupV2Path returns the path of the "0::" line of a /proc/PID/cgroup file.
func cgroupV2Path(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(p, "/") && len(p) <= maxCgroupPath {
			return p
		}
	}
	return ""
}

// ContainerID extracts a container id (64 hex digits) from a cgroup path: docker, containerd,
// CRI-O, podman and Kubernetes layouts (".../docker-<id>.scope", "/docker/<id>",
// ".../cri-containerd-<id>.scope", ".../crio-<id>.scope", ".../libpod-<id>.scope",
// "/kubepods/.../<id>"). The innermost one wins; conmon scopes are not containers.
func ContainerID(cgroupPath string) string {
	segs := strings.Split(cgroupPath, "/")
	for i := len(segs) - 1; i >= 0; i-- {
		s := strings.TrimSuffix(segs[i], ".scope")
		if strings.Contains(s, "conmon") {
			continue
		}
		if j := strings.LastIndexAny(s, "-:"); j >= 0 {
			s = s[j+1:]
		}
		if isHex64(s) {
			return s
		}
	}
	return ""
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// HostScenario describes this host: hostname, the address and MAC of the interface of the
// default route (else the first interface that is up and not loopback), the OS from
// /etc/os-release ("debian 12") and the machine from uname ("x86_64").
func HostScenario() event.Scenario {
	s := event.Scenario{Hostname: hostname(), OS: osName(), Arch: arch()}
	s.IP, s.MAC = hostAddress()
	return s
}

func osName() string {
	b, err := readBounded("/etc/os-release", maxOSRelease)
	if err != nil {
		b, err = readBounded("/usr/lib/os-release", maxOSRelease)
	}
	if err != nil {
		return runtime.GOOS
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `'"`)
		}
		kv[k] = v
	}
	name := strings.TrimSpace(kv["ID"] + " " + kv["VERSION_ID"])
	if name == "" {
		return runtime.GOOS
	}
	return name
}

func arch() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return runtime.GOARCH
	}
	return unix.ByteSliceToString(u.Machine[:])
}

// defaultRouteIface reads the interface of the IPv4 default route from /proc/net/route.
func defaultRouteIface() string {
	b, err := readBounded("/proc/net/route", maxRouteFile)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 8 && f[1] == "00000000" && f[7] == "00000000" {
			return f[0]
		}
	}
	return ""
}

func hostAddress() (ip, mac string) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", ""
	}
	pick := func(ifc net.Interface) (string, bool) {
		addrs, err := ifc.Addrs()
		if err != nil {
			return "", false
		}
		var v6 string
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() {
				continue
			}
			if n.IP.To4() != nil {
				return n.IP.String(), true
			}
			if v6 == "" {
				v6 = n.IP.String()
			}
		}
		return v6, v6 != ""
	}
	if name := defaultRouteIface(); name != "" {
		for _, ifc := range ifaces {
			if ifc.Name == name {
				if a, ok := pick(ifc); ok {
					return a, ifc.HardwareAddr.String()
				}
			}
		}
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if a, ok := pick(ifc); ok {
			return a, ifc.HardwareAddr.String()
		}
	}
	return "", ""
}
