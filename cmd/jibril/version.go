package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	qjs "github.com/jibril-rt/jibril/quickjs-wasm"
)

// version is set with -ldflags "-X main.version=..." by release builds.
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the QuickJS engine and the Go runtime",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "jibril %s\nengine: %s\ngo: %s %s/%s\n", version, qjs.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
