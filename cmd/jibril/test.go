package main

import (
	"fmt"
	"io/fs"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/jibril-rt/jibril/recipes/testrun"
)

type testFlags struct {
	run, transcripts, defaultPolicy string
	update, verbose                 bool
}

// newTestCmd builds `jibril test`. builtin returns the built-in recipes (with their tests)
// for a run without PATH; nil when this build has none.
func newTestCmd(builtin func() fs.FS) *cobra.Command {
	f := &testFlags{}
	cmd := &cobra.Command{
		Use:   "test [PATH]...",
		Short: "Run the deterministic reaction tests (*.test.yaml) under the paths (default: the built-in recipes)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTests(cmd, f, args, builtin)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.run, "run", "", "run only the cases whose recipe/case ID matches this regexp")
	fl.StringVar(&f.transcripts, "transcripts", "", "write one JSON transcript per case into this directory")
	fl.BoolVar(&f.update, "update", false, "(re)write the golden files of cases marked golden: true")
	fl.StringVar(&f.defaultPolicy, "default-policy", "strict", "policy of a recipe without a policy file: strict|jibril")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "report every case, not only failures")
	return cmd
}

func runTests(cmd *cobra.Command, f *testFlags, args []string, builtin func() fs.FS) error {
	if f.defaultPolicy != "strict" && f.defaultPolicy != "jibril" {
		return badInput("--default-policy: %q is not strict or jibril", f.defaultPolicy)
	}
	o := testrun.Options{Out: cmd.OutOrStdout(), Verbose: f.verbose, TranscriptDir: f.transcripts, Update: f.update}
	if f.run != "" {
		re, err := regexp.Compile(f.run)
		if err != nil {
			return badInput("--run: %v", err)
		}
		o.Run = re
	}
	var srcs []testrun.Source
	if len(args) == 0 {
		if builtin == nil {
			return badInput("this build has no built-in recipes: give a PATH")
		}
		if f.update {
			return badInput("--update rewrites golden files on disk: give the PATH of the recipes")
		}
		srcs = append(srcs, testrun.Source{FS: builtin(), Name: "builtin"})
	}
	for _, a := range args {
		s, err := testrun.DirSource(a)
		if err != nil {
			return badInput("%v", err)
		}
		srcs = append(srcs, s)
	}
	suites, errs := testrun.Load(srcs, f.defaultPolicy)
	if len(errs) > 0 {
		for _, e := range errs[:len(errs)-1] {
			fmt.Fprintln(cmd.ErrOrStderr(), "jibril:", e)
		}
		return badInput("%v", errs[len(errs)-1])
	}
	sum, err := testrun.Run(cmd.Context(), suites, o)
	if err != nil {
		return err
	}
	if sum.Failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}
