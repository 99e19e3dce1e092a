package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/jibril-rt/jibril/engine/printer"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check the daemon configuration, print the default one"}
	var file string
	check := &cobra.Command{
		Use:   "check [--config FILE]",
		Short: "Load the configuration as `jibril run` would (file, JIBRIL_* environment) and validate it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadDaemonConfig(orDefault(file), file != "", os.Environ(), defaultDaemonConfig(g.stateDir))
			if err != nil {
				return badInput("%v", err)
			}
			cfg.Printers = cfg.Printers.WithDefaults()
			if err := cfg.validate(); err != nil {
				return badInput("%s: %v", orDefault(file), err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", orDefault(file))
			return nil
		},
	}
	check.Flags().StringVar(&file, "config", "", "configuration file (default "+defaultConfigFile+" when it exists)")
	def := &cobra.Command{
		Use:   "default",
		Short: "Print the default configuration file (every key, commented out, with its default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := defaultConfigYAML()
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), s)
			return err
		},
	}
	cmd.AddCommand(check, def)
	return cmd
}

// configTemplate is the default /etc/jibril/config.yaml: every key with its default value,
// commented out, so that the built-in defaults stay in force until a line is uncommented.
// Prose lines start with "# " and never with "key:"; the test uncomments every setting and
// checks that the result loads to the built-in defaults, key for key.
const configTemplate = `# jibril daemon configuration (jibril run --config FILE). Every key is optional; each
# line below shows a key with its built-in default. Uncomment to change it. Environment
# variables override this file: JIBRIL_SECTION__KEY (a double underscore nests), e.g.
# JIBRIL_PRINTERS__FILE__PATH. Command-line flags override both.

# SQLite database, evidence bundles, temp root and wasm cache.
# state_dir: {{.StateDir}}
# Recipe directories, watched and reloaded on change (SIGHUP reloads at once).
# recipes: []
# The built-in recipe library.
# builtin: {{.Builtin}}
# Where <recipe>.policy.yaml files may also live, besides next to each recipe.
# policy_dir: ""
# The policy of recipes without a policy file: strict (log, store, tempdir only) or jibril.
# default_policy: {{.DefaultPolicy}}
# Record every reaction's effects instead of performing them.
# dry_run: {{.DryRun}}
# Let reactions call PowerOff() and Panic() (their policy must grant power too).
# allow_power: {{.AllowPower}}
# How often recipe directories are checked for changes.
# reload_every: {{dur .ReloadEvery}}
# Switch named recipes to enforce, dry-run or off, whatever they ship with.
# recipe_modes: {}
# Enforce only for processes that run, or descend from, one of these executables (absolute
# paths); every other reaction runs in dry-run. Empty: enforce everywhere.
# enforce_scope: []

# printers:
#   stdout:
#     enabled: {{.Printers.Stdout.Enabled}}
#     queue: {{.Printers.Stdout.Queue}}
#   file:
#     path: ""
#     max_size: {{size .Printers.File.MaxSize}}
#     keep: {{.Printers.File.Keep}}
#     queue: {{.Printers.File.Queue}}
#   webhook:
#     url: ""
#     headers: {}
#     batch: {{.Printers.Webhook.Batch}}
#     flush_interval: {{dur .Printers.Webhook.FlushInterval}}
#     timeout: {{dur .Printers.Webhook.Timeout}}
#     retries: {{.Printers.Webhook.Retries}}
#     backoff: {{dur .Printers.Webhook.Backoff}}
#     max_backoff: {{dur .Printers.Webhook.MaxBackoff}}
#     queue: {{.Printers.Webhook.Queue}}

# Prometheus metrics and the health endpoint (loopback only unless allowed).
# metrics:
#   enabled: {{.Metrics.Enabled}}
#   address: {{.Metrics.Address}}
#   allow_non_loopback: {{.Metrics.AllowNonLoopback}}

# The safety floor: never signalled, never blocked, whatever a policy grants.
# protect:
#   min_pid: {{.Protect.MinPID}}
#   names: []
#   cidrs: []

# The daemon's ceiling on every reaction (policies may only ask for less).
# limits:
#   timeout: {{dur .Limits.Timeout}}
#   memory: {{size .Limits.Memory}}
#   helper_calls: {{.Limits.HelperCalls}}

# Reaction dispatch: worker count (0 = one per CPU), queue length, instances per reaction.
# engine:
#   workers: {{.Engine.Workers}}
#   queue: {{.Engine.Queue}}
#   instances: {{.Engine.Instances}}

# Kernel sensors. channel_size 0 and file_ring_bytes 0 mean the built-in sizes.
# realtime_exec puts the exec ring reader on its own SCHED_FIFO thread (needs CAP_SYS_NICE,
# which the systemd unit leaves out; refused, the reader falls back to the default). By
# default it waits on the Go netpoller, which measured faster from exec to kill here and
# lets the Go runtime's monitor sleep.
# sensors:
#   realtime_exec: {{.Sensors.RealtimeExec}}
#   file: {{.Sensors.File}}
#   net: {{.Sensors.Net}}
#   dns: {{.Sensors.DNS}}
#   channel_size: {{.Sensors.ChannelSize}}
#   file_ring_bytes: {{size .Sensors.FileRingBytes}}

# Event loss: checked every "every"; past "threshold" lost events: log, alert or exit.
# loss:
#   every: {{dur .Loss.Every}}
#   threshold: {{.Loss.Threshold}}
#   action: {{.Loss.Action}}

# Privileges after start-up: keep only CAP_NET_ADMIN, CAP_KILL, CAP_SYS_PTRACE and
# CAP_DAC_READ_SEARCH, set no_new_privs, and Landlock the file system: read-only but the
# state directory and read_write, executables only from the system directories. Shell
# reactions inherit it and write only under the state directory (their private temp
# directory <state>/tmp, evidence in <state>/evidence). Landlock hides /proc/PID/exe, cwd,
# fd, environ and maps of every other process: the daemon reads them through its /proc
# broker, a helper process started before Landlock that keeps only CAP_SYS_PTRACE and
# CAP_DAC_READ_SEARCH and serves only those reads.
# confine:
#   enabled: {{.Confine.Enabled}}
#   landlock: {{.Confine.Landlock}}
#   read_write: []
`

// defaultConfigYAML renders configTemplate with the built-in defaults.
func defaultConfigYAML() (string, error) {
	t, err := template.New("config").Funcs(template.FuncMap{
		"dur":  func(d time.Duration) string { return d.String() },
		"size": byteSizeString,
	}).Parse(configTemplate)
	if err != nil {
		return "", err
	}
	cfg := defaultDaemonConfig(stateDirPath)
	var b bytes.Buffer
	if err := t.Execute(&b, cfg); err != nil {
		return "", err
	}
	return b.String(), nil
}

// byteSizeString writes a size in the largest binary unit that divides it.
func byteSizeString(b printer.ByteSize) string {
	for _, u := range []struct {
		suffix string
		n      printer.ByteSize
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && b%u.n == 0 {
			return fmt.Sprintf("%d%s", b/u.n, u.suffix)
		}
	}
	return strings.TrimSpace(fmt.Sprint(int64(b)))
}
