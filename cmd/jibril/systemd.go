package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/jibril-rt/jibril/engine/confine"
)

// Where `jibril systemd install` puts things, relative to --prefix.
const (
	unitPath       = "/etc/systemd/system/jibril.service"
	recipesDirPath = "/etc/jibril/recipes"
	stateDirPath   = "/var/lib/jibril"
)

// startupCaps are the capabilities the daemon needs while it starts; the unit's bounding
// set. Once started it keeps only confine.DaemonCaps, and needs CAP_SETPCAP to shrink its
// bounding set down to them. Each was measured (jibril run under setpriv --bounding-set).
func startupCaps() []struct{ name, why string } {
	return []struct{ name, why string }{
		{"CAP_BPF", "create maps, load programs"},
		{"CAP_PERFMON", "load tracing programs (tp_btf, raw_tp), bpf_send_signal"},
		{"CAP_SYS_ADMIN", "fanotify_init(FAN_CLASS_CONTENT) for prevent: deny; the BPF LSM and fentry probes"},
		{"CAP_NET_ADMIN", "cgroup_skb programs, nftables"},
		{"CAP_DAC_OVERRIDE", "the cgroup_skb probe makes a child cgroup (cgroup roots may be mode 0555)"},
		{"CAP_SYS_RESOURCE", "memlock on kernels that still charge BPF memory to it"},
		{"CAP_SETPCAP", "dropping the start-up capabilities from the bounding set"},
		{"CAP_KILL", "kept: signals to other users' processes"},
		{"CAP_SYS_PTRACE", "kept: /proc/PID/{exe,cwd,fd,environ} of other users' processes"},
		{"CAP_DAC_READ_SEARCH", "kept: reading other users' files"},
	}
}

// unitData fills unitTemplate.
type unitData struct {
	Binary, Config, Recipes, State string
	StartupCaps                    []struct{ name, why string }
	Kept                           []confine.Kept
	Version                        string
}

func (u unitData) CapList() string {
	var out []string
	for _, c := range u.StartupCaps {
		out = append(out, c.name)
	}
	return strings.Join(out, " ")
}

func (u unitData) CapWhy() []string {
	var out []string
	for _, c := range u.StartupCaps {
		out = append(out, c.name+": "+c.why)
	}
	return out
}

func (u unitData) KeptNames() string {
	var out []string
	for _, k := range u.Kept {
		out = append(out, k.Cap.String())
	}
	return strings.Join(out, " ")
}

const unitTemplate = `# jibril.service, written by ` + "`jibril systemd install`" + ` (jibril {{.Version}}).
# The next install rewrites this file: put local changes in a drop-in (systemctl edit jibril).
[Unit]
Description=jibril runtime security: eBPF detections and sandboxed reactions
Documentation=https://github.com/jibril-rt/jibril
# After the firewall service: a "flush ruleset" there would remove our nftables table
# (the daemon's watchdog would restore it within a second, but not before).
After=network-pre.target nftables.service
Wants=network-pre.target
StartLimitIntervalSec=60
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
# The configuration must parse; a recipe that does not validate is reported here (the
# leading "-": the daemon still starts, it loads the others and refuses that one).
ExecStartPre={{.Binary}} config check --config {{.Config}}
ExecStartPre=-{{.Binary}} recipes validate {{.Recipes}}
ExecStart={{.Binary}} run --config {{.Config}} --recipes {{.Recipes}} --state-dir {{.State}} --log-format json
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=2
# READY=1 comes after the sensors are attached; WATCHDOG=1 only while the daemon's own
# watchdog (nftables table, BPF links) completes its rounds.
TimeoutStartSec=120
WatchdogSec=30
TimeoutStopSec=30
# SIGTERM to the daemon (it flushes printers and the store), then SIGKILL to what is left
# of shell reactions.
KillMode=mixed
OOMScoreAdjust=-900
LimitMEMLOCK=infinity
UMask=0077

StateDirectory=jibril
StateDirectoryMode=0700
LogsDirectory=jibril
LogsDirectoryMode=0700
ReadWritePaths={{.State}}
# Temporary files (the start-up probes, shell reactions) go to the state directory: /tmp
# is read-only under ProtectSystem=strict.
Environment=TMPDIR={{.State}}/tmp

# Capabilities. The bounding set is what start-up needs; once started the daemon keeps
# only {{.KeptNames}}
# in every set (bounding included), sets no_new_privs and Landlock (confine.landlock); its
# /proc broker, started before, keeps only CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.
{{- range .CapWhy}}
#   {{.}}
{{- end}}
CapabilityBoundingSet={{.CapList}}
AmbientCapabilities=
NoNewPrivileges=yes

# File system. Read-only everywhere but the state and log directories.
ProtectSystem=strict
# Reactions read and hash files in home directories (fs.read, HashFile, evidence).
ProtectHome=read-only
# Not PrivateTmp: the daemon must see the real /tmp, where recipes watch files, where
# kill-on-exec and deny marks and HashFile/ReadFile targets live, and which evidence
# bundles describe (cwd, exe, open files of suspects).
PrivateTmp=no
PrivateDevices=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
ProtectHostname=yes
# Not ProtectKernelTunables nor ProtectControlGroups: the cgroup_skb probe creates a
# child cgroup under /sys/fs/cgroup at start (the DNS sensor depends on it).
ProtectKernelTunables=no
ProtectControlGroups=no
# Every process must stay visible in /proc (ProtectProc=default, ProcSubset=all).
ProtectProc=default
ProcSubset=all
RestrictNamespaces=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
# Not MemoryDenyWriteExecute: wazero compiles reactions' WebAssembly to native code.
MemoryDenyWriteExecute=no
# sensors.realtime_exec needs CAP_SYS_NICE in the bounding set and RestrictRealtime=no
# (without them the exec reader says SCHED_FIFO was refused and keeps the default).
RestrictRealtime=yes
# netlink for nftables, unix for sd_notify, inet for webhooks and metrics.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
# @system-service plus what BPF, fanotify, tracepoint probes and Landlock use, and seccomp
# for the /proc broker's own filter (one call for all its threads; it can only restrict).
SystemCallFilter=@system-service bpf perf_event_open fanotify_init fanotify_mark landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
`

// renderUnit renders the unit for a binary.
func renderUnit(binary string) (string, error) {
	if err := checkUnitPath(binary); err != nil {
		return "", fmt.Errorf("--binary: %w", err)
	}
	t, err := template.New("unit").Parse(unitTemplate)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = t.Execute(&b, unitData{Binary: binary, Config: defaultConfigFile, Recipes: recipesDirPath, State: stateDirPath,
		StartupCaps: startupCaps(), Kept: confine.DaemonCaps(), Version: version})
	return b.String(), err
}

// checkUnitPath refuses paths that systemd would split or expand.
func checkUnitPath(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	if strings.ContainsAny(p, " \t\n\r\"'\\$%;") {
		return fmt.Errorf("%q has characters a unit file would split or expand (space, quote, backslash, $, %%, ;)", p)
	}
	return nil
}

type installFlags struct {
	prefix, binary string
	dryRun, force  bool
}

func newSystemdCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "systemd", Short: "Install jibril as a systemd service"}
	f := &installFlags{}
	install := &cobra.Command{
		Use:   "install [--prefix /] [--dry-run] [--force] [--binary PATH]",
		Short: "Write " + unitPath + ", a default " + defaultConfigFile + " and " + recipesDirPath + "/",
		Long: "Writes the unit (replacing an older one), the default configuration (never replacing an\n" +
			"existing one unless --force) and the recipe directory, under --prefix. --dry-run prints\n" +
			"what would be written.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return systemdInstall(cmd.OutOrStdout(), f)
		},
	}
	fl := install.Flags()
	fl.StringVar(&f.prefix, "prefix", "/", "root of the target file system")
	fl.StringVar(&f.binary, "binary", "", "the jibril binary the unit runs, as seen on the target (default: this executable)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print what would be written, write nothing")
	fl.BoolVar(&f.force, "force", false, "replace an existing configuration file")
	cmd.AddCommand(install)
	return cmd
}

func systemdInstall(out io.Writer, f *installFlags) error {
	if !filepath.IsAbs(f.prefix) {
		return badInput("--prefix: %q is not an absolute path", f.prefix)
	}
	bin := f.binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return badInput("--binary: cannot find this executable: %v", err)
		}
		if bin, err = filepath.EvalSymlinks(exe); err != nil {
			return badInput("--binary: %v", err)
		}
	}
	unit, err := renderUnit(bin)
	if err != nil {
		return badInput("%v", err)
	}
	cfg, err := defaultConfigYAML()
	if err != nil {
		return err
	}
	at := func(p string) string { return filepath.Join(f.prefix, p) }
	steps := []struct {
		path, content string
		mode          fs.FileMode
		keep          bool // keep an existing file unless --force
	}{
		{at(unitPath), unit, 0o644, false},
		{at(defaultConfigFile), cfg, 0o600, !f.force},
	}
	for _, s := range steps {
		exists, err := regularOrAbsent(s.path)
		if err != nil {
			return &exitError{code: 1, msg: err.Error()}
		}
		switch {
		case exists && s.keep:
			fmt.Fprintf(out, "kept %s (it exists; --force replaces it)\n", s.path)
		case f.dryRun:
			fmt.Fprintf(out, "would write %s (mode %04o):\n%s\n", s.path, s.mode, s.content)
		default:
			if err := writeAtomic(s.path, []byte(s.content), s.mode); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			verb := "wrote"
			if exists {
				verb = "replaced"
			}
			fmt.Fprintf(out, "%s %s\n", verb, s.path)
		}
	}
	rd := at(recipesDirPath)
	if f.dryRun {
		fmt.Fprintf(out, "would create %s/ (mode 0755)\n", rd)
	} else {
		if err := os.MkdirAll(rd, 0o755); err != nil {
			return &exitError{code: 1, msg: fmt.Sprintf("create %s: %v", rd, err)}
		}
		fmt.Fprintf(out, "created %s/\n", rd)
	}
	if _, err := os.Stat(at(bin)); err != nil && !f.dryRun {
		fmt.Fprintf(out, "note: %s does not exist under %s yet: install the binary there\n", bin, f.prefix)
	}
	fmt.Fprintln(out, "next: systemctl daemon-reload && systemctl enable --now jibril")
	return nil
}

// regularOrAbsent says whether p exists; anything there but a regular file (a symbolic
// link, a directory) is refused rather than replaced.
func regularOrAbsent(p string) (bool, error) {
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() {
		return true, fmt.Errorf("%s exists and is not a regular file (%s): refusing to replace it", p, st.Mode().Type())
	}
	return true, nil
}

// writeAtomic writes a file through a temporary file in the same directory and a rename,
// so that a crash never leaves half a unit or configuration.
func writeAtomic(p string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(p)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
