package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/jibril-rt/jibril/engine/metrics"
	"github.com/jibril-rt/jibril/engine/printer"
	"github.com/jibril-rt/jibril/recipes/policy"
)

// defaultConfigFile is read when it exists and --config does not name another file.
const defaultConfigFile = "/etc/jibril/config.yaml"

// daemonConfig is the daemon's configuration (SPEC §9): the file, then JIBRIL_* environment
// variables, then flags. Every field has a working default, so no file is needed at all.
type daemonConfig struct {
	StateDir      string         `koanf:"state_dir"`
	Recipes       []string       `koanf:"recipes"` // recipe directories, watched
	Builtin       bool           `koanf:"builtin"` // load the built-in library too
	PolicyDir     string         `koanf:"policy_dir"`
	DefaultPolicy string         `koanf:"default_policy"`
	DryRun        bool           `koanf:"dry_run"`
	AllowPower    bool           `koanf:"allow_power"`
	Printers      printer.Config `koanf:"printers"`
	Metrics       metricsConfig  `koanf:"metrics"`
	Protect       protectConfig  `koanf:"protect"`
	Limits        limitsConfig   `koanf:"limits"`
	Engine        engineConfig   `koanf:"engine"`
	Sensors       sensorsConfig  `koanf:"sensors"`
	ReloadEvery   time.Duration  `koanf:"reload_every"`
	Loss          lossConfig     `koanf:"loss"`
	Confine       confineConfig  `koanf:"confine"`
	// RecipeModes switches named recipes to enforce, dry-run or off, whatever they ship with.
	RecipeModes map[string]string `koanf:"recipe_modes"`
	// EnforceScope limits enforcement to processes running, or descending from, these
	// executables (engine.Config.EnforceScope).
	EnforceScope []string `koanf:"enforce_scope"`

	EnvIgnored []string `koanf:"-"` // JIBRIL_* variables that name no setting
}

// lossConfig says what to do when events are lost: sensor ring buffers or channels full, or
// reactions dropped because their queue was full.
type lossConfig struct {
	Every     time.Duration `koanf:"every"`     // how often loss is checked
	Threshold uint64        `koanf:"threshold"` // lost events per check that trigger Action
	Action    string        `koanf:"action"`    // log | alert | exit
}

type metricsConfig struct {
	Enabled          bool   `koanf:"enabled"`
	Address          string `koanf:"address"`
	AllowNonLoopback bool   `koanf:"allow_non_loopback"`
}

type protectConfig struct {
	MinPID int      `koanf:"min_pid"`
	Names  []string `koanf:"names"`
	CIDRs  []string `koanf:"cidrs"`
}

type limitsConfig struct {
	Timeout     time.Duration    `koanf:"timeout"`
	Memory      printer.ByteSize `koanf:"memory"`
	HelperCalls int              `koanf:"helper_calls"`
}

type engineConfig struct {
	Workers   int `koanf:"workers"`
	Queue     int `koanf:"queue"`
	Instances int `koanf:"instances"`
}

type sensorsConfig struct {
	RealtimeExec bool `koanf:"realtime_exec"` // exec ring reader on its own SCHED_FIFO thread in epoll_wait (needs CAP_SYS_NICE)
	File         bool `koanf:"file"`
	Net          bool `koanf:"net"`
	DNS          bool `koanf:"dns"`
	// ChannelSize bounds each sensor stream's channel (0: the default, 4096); FileRingBytes
	// sizes the file ring buffer (default 4 MiB: ~7000 events, and every MiB of ring counts twice
	// in RSS as it is mapped twice; 0: the sensors' own 16 MiB). Small values make loss easy to
	// provoke: the loss watcher and its tests rely on them.
	ChannelSize   int              `koanf:"channel_size"`
	FileRingBytes printer.ByteSize `koanf:"file_ring_bytes"`
}

func defaultDaemonConfig(stateDir string) daemonConfig {
	lim := policy.DefaultLimits()
	return daemonConfig{
		StateDir:      stateDir,
		Builtin:       true,
		DefaultPolicy: "strict",
		Printers:      printer.DefaultConfig(),
		Metrics:       metricsConfig{Enabled: true, Address: metrics.DefaultAddress},
		Protect:       protectConfig{MinPID: 500},
		Limits:        limitsConfig{Timeout: lim.Timeout, Memory: printer.ByteSize(lim.MemoryBytes), HelperCalls: lim.HelperCalls},
		Engine:        engineConfig{Queue: 1024, Instances: 4},
		Sensors:       sensorsConfig{File: true, Net: true, DNS: true, FileRingBytes: 4 << 20},
		ReloadEvery:   time.Second,
		Loss:          lossConfig{Every: 10 * time.Second, Threshold: 1000, Action: "alert"},
		Confine:       confineConfig{Enabled: true, Landlock: true},
	}
}

// envKey maps JIBRIL_PRINTERS__FILE__PATH to printers.file.path: a double underscore nests,
// a single one stays part of the name (dry_run, state_dir).
func envKey(k string) string {
	k = strings.ToLower(strings.TrimPrefix(k, "JIBRIL_"))
	return strings.ReplaceAll(k, "__", ".")
}

// loadDaemonConfig reads the configuration. explicit says the file was named on the command
// line (then it must exist); environ is the environment to read (os.Environ in the daemon).
func loadDaemonConfig(path string, explicit bool, environ []string, defaults daemonConfig) (daemonConfig, error) {
	k := koanf.New(".")
	cfg := defaults
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
				return cfg, fmt.Errorf("%s: %v", path, oneLine(err))
			}
			if err := decode(k, &cfg); err != nil {
				return cfg, fmt.Errorf("%s%s: %v", path, lineOf(data, err), oneLine(err))
			}
		case explicit || !errors.Is(err, os.ErrNotExist):
			return cfg, fmt.Errorf("config %s: %v", path, unwrapPath(err))
		}
	}
	ek := koanf.New(".")
	err := ek.Load(env.Provider(".", env.Opt{
		Prefix:        "JIBRIL_",
		EnvironFunc:   func() []string { return environ },
		TransformFunc: func(key, v string) (string, any) { return envKey(key), v },
	}), nil)
	if err != nil {
		return cfg, fmt.Errorf("environment: %v", err)
	}
	// The environment is shared with everything else on the host: a JIBRIL_* variable that
	// names no setting is ignored (and reported by the daemon), never fatal. A setting given
	// a bad value still is.
	for range 64 {
		err := decode(ek, &cfg)
		if err == nil {
			return cfg, nil
		}
		m := invalidKeys.FindStringSubmatch(err.Error())
		if m == nil {
			return cfg, fmt.Errorf("environment JIBRIL_*: %v", oneLine(err))
		}
		for _, k := range strings.Split(m[2], ",") {
			key := strings.TrimSpace(k)
			if m[1] != "" {
				key = m[1] + "." + key
			}
			ek.Delete(key)
			cfg.EnvIgnored = append(cfg.EnvIgnored, "JIBRIL_"+strings.ToUpper(strings.ReplaceAll(key, ".", "__")))
		}
	}
	return cfg, errors.New("environment JIBRIL_*: too many unknown variables")
}

func decode(k *koanf.Koanf, out *daemonConfig) error {
	return k.UnmarshalWithConf("", out, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.TextUnmarshallerHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
		ErrorUnused:      true,
		WeaklyTypedInput: true,
		Result:           out,
		TagName:          "koanf",
	}})
}

// validate checks what decoding cannot: enums, addresses, ranges.
func (c *daemonConfig) validate() error {
	if c.DefaultPolicy != "strict" && c.DefaultPolicy != "jibril" {
		return fmt.Errorf("default_policy: %q is not strict or jibril", c.DefaultPolicy)
	}
	for i, p := range c.EnforceScope {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("enforce_scope[%d]: %q is not a clean absolute path", i, p)
		}
	}
	for name, m := range c.RecipeModes {
		switch policy.Mode(m) {
		case policy.ModeEnforce, policy.ModeDryRun, policy.ModeOff:
		default:
			return fmt.Errorf("recipe_modes.%s: %q is not enforce, dry-run or off", name, m)
		}
	}
	switch c.Loss.Action {
	case "log", "alert", "exit":
	default:
		return fmt.Errorf("loss.action: %q is not log, alert or exit", c.Loss.Action)
	}
	if c.Loss.Every <= 0 {
		return fmt.Errorf("loss.every: must be positive, got %s", c.Loss.Every)
	}
	if c.StateDir == "" {
		return errors.New("state_dir: empty")
	}
	if c.Protect.MinPID < 2 {
		return fmt.Errorf("protect.min_pid: %d is below 2 (pid 1 is always protected)", c.Protect.MinPID)
	}
	for i, s := range c.Protect.CIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			if _, err2 := netip.ParseAddr(s); err2 != nil {
				return fmt.Errorf("protect.cidrs[%d]: %q is not a CIDR or an address", i, s)
			}
		}
	}
	if c.Limits.Timeout <= 0 || c.Limits.Memory <= 0 || c.Limits.HelperCalls <= 0 {
		return errors.New("limits: timeout, memory and helper_calls must be positive")
	}
	if c.Sensors.ChannelSize < 0 || c.Sensors.ChannelSize > 1<<20 {
		return fmt.Errorf("sensors.channel_size: must be between 0 (default) and %d, got %d", 1<<20, c.Sensors.ChannelSize)
	}
	if r := c.Sensors.FileRingBytes; r != 0 && (r < printer.ByteSize(os.Getpagesize()) || r > 1<<30 || r&(r-1) != 0) {
		return fmt.Errorf("sensors.file_ring_bytes: must be 0 (default) or a power of two between %d and 1GiB, got %d", os.Getpagesize(), r)
	}
	if c.Engine.Workers < 0 || c.Engine.Queue < 0 || c.Engine.Instances < 0 {
		return errors.New("engine: workers, queue and instances must not be negative")
	}
	if c.Metrics.Enabled {
		if _, err := metrics.CheckAddress(metrics.ServerConfig{Address: c.Metrics.Address, AllowNonLoopback: c.Metrics.AllowNonLoopback}); err != nil {
			return fmt.Errorf("metrics.address: %v", err)
		}
	}
	if err := c.Confine.validate(); err != nil {
		return err
	}
	if err := c.Printers.Validate(); err != nil {
		return err
	}
	return nil
}

func (c *daemonConfig) protectCIDRs() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.Protect.CIDRs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

func (c *daemonConfig) ceiling() policy.Limits {
	l := policy.DefaultLimits()
	l.Timeout, l.MemoryBytes, l.HelperCalls = c.Limits.Timeout, uint64(c.Limits.Memory), c.Limits.HelperCalls
	return l
}

var invalidKeys = regexp.MustCompile(`(?:'([A-Za-z0-9_.\-\[\]]*)' )?has invalid keys: ([A-Za-z0-9_.\-]+(?:, [A-Za-z0-9_.\-]+)*)`)
var fieldName = regexp.MustCompile(`'([A-Za-z0-9_.\-\[\]]+)'`)

// lineOf finds the line of the key an error names in the YAML file, as ":LINE".
func lineOf(data []byte, err error) string {
	msg := err.Error()
	var key string
	if m := invalidKeys.FindStringSubmatch(msg); m != nil {
		key, _, _ = strings.Cut(m[2], ",")
		if m[1] != "" {
			key = m[1] + "." + key
		}
	} else if m := fieldName.FindStringSubmatch(msg); m != nil {
		key = m[1]
	}
	if key == "" {
		return ""
	}
	var root yamlv3.Node
	if yamlv3.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return ""
	}
	n := root.Content[0]
	parts := strings.Split(key, ".")
	line := 0
	for _, p := range parts {
		if n.Kind != yamlv3.MappingNode {
			break
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == p {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			break
		}
	}
	if line == 0 {
		return ""
	}
	return fmt.Sprintf(":%d", line)
}

// oneLine flattens the decoder's multi-line report into one line.
func oneLine(err error) string {
	s := err.Error()
	for _, noise := range []string{"decoding failed due to the following error(s):", "1 error(s) decoding:", "* "} {
		s = strings.ReplaceAll(s, noise, "")
	}
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}
