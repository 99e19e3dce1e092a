package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/confine"
	qjs "github.com/jibril-rt/jibril/quickjs-wasm"
)

// version is set with -ldflags "-X main.version=..." by release builds.
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the QuickJS engine, the Go runtime and the kernel features found",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "jibril %s\nengine: %s\ngo: %s %s/%s\n", version, qjs.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			var u unix.Utsname
			if unix.Uname(&u) == nil {
				fmt.Fprintf(out, "kernel: %s\n", unix.ByteSliceToString(u.Release[:]))
			}
			if abi := confine.LandlockABI(); abi > 0 {
				fmt.Fprintf(out, "landlock: ABI %d\n", abi)
			} else {
				fmt.Fprintln(out, "landlock: unavailable")
			}
			if os.Geteuid() != 0 {
				fmt.Fprintln(out, "kernel features: not probed (the probes load BPF programs: run as root)")
				return nil
			}
			feats := bpf.ProbeOnly(cmd.Context()) // a report: mounts nothing
			inUse, fallbacks := featureSummary(feats)
			fmt.Fprintf(out, "kernel features in use: %s\n", strings.Join(inUse, ", "))
			if len(fallbacks) == 0 {
				fmt.Fprintln(out, "fallbacks: none")
			} else {
				fmt.Fprintln(out, "fallbacks:")
			}
			lines := feats.Lines()
			for i, s := range feats.List() {
				if !s.Available {
					fmt.Fprintf(out, "  %s\n", lines[i])
				}
			}
			for _, s := range feats.List() {
				if s.Available && s.Note != "" {
					fmt.Fprintf(out, "%s: %s\n", s.Name, s.Note)
				}
			}
			return nil
		},
	}
}
