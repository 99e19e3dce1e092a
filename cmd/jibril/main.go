// Command jibril is the runtime-security daemon and its tools (SPEC §7).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/jibril-rt/jibril/recipes/builtin"
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// badInput is exit 2 with one line on stderr (SPEC §7).
func badInput(format string, a ...any) error {
	return &exitError{code: 2, msg: fmt.Sprintf(format, a...)}
}

type globals struct {
	stateDir  string
	logFormat string
	logLevel  string
}

func (g *globals) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, badInput("--log-level: %q is not debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch g.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, badInput("--log-format: %q is not json or text", g.logFormat)
}

func defaultStateDir() string {
	if d := os.Getenv("JIBRIL_STATE_DIR"); d != "" {
		return d
	}
	return "/var/lib/jibril"
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "jibril",
		Short:         "Runtime security: eBPF detections and sandboxed, testable reactions",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", defaultStateDir(), "state directory (SQLite, temp root, evidence); env JIBRIL_STATE_DIR")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: json|text")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug|info|warn|error")
	root.AddCommand(newSandboxCmd(g), newVersionCmd(), newStoreCmd(g), newAuditCmd(g), newNetCmd(g), newRunCmd(g), newRecipesCmd(g))
	root.AddCommand(newTestCmd(builtin.FS))
	root.AddCommand(newSystemdCmd(), newConfigCmd(g), newProcBrokerCmd())
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(os.Stderr, "jibril:", ee.msg)
		}
		os.Exit(ee.code)
	}
	// Flag and argument errors from cobra are bad input too.
	fmt.Fprintln(os.Stderr, "jibril:", err)
	os.Exit(2)
}
