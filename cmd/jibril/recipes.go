package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/jibril-rt/jibril/engine"
	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/builtin"
)

func newRecipesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "recipes", Short: "Validate and list recipes"}
	var defaultPolicy, policyDir string
	validate := &cobra.Command{
		Use:   "validate PATH...",
		Short: "Check recipe directories or files and their policies; one line per error (file:line)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcs, err := pathSources(args)
			if err != nil {
				return err
			}
			ok, errs := engine.Validate(srcs, engine.LoadOptions{DefaultPolicy: defaultPolicy, PolicyDir: policyDir})
			for _, e := range errs {
				fmt.Fprintln(cmd.ErrOrStderr(), e.Error())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d valid, %d errors\n", len(ok), len(errs))
			if len(errs) > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	validate.Flags().StringVar(&defaultPolicy, "default-policy", "strict", "policy of recipes without a policy file: strict|jibril")
	validate.Flags().StringVar(&policyDir, "policy-dir", "", "extra directory of <recipe>.policy.yaml files")

	var cfgFile string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the recipes the daemon would load with this configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadDaemonConfig(orDefault(cfgFile), cfgFile != "", os.Environ(), defaultDaemonConfig(g.stateDir))
			if err != nil {
				return badInput("%v", err)
			}
			ok, errs := engine.Validate(cfg.sources(), cfg.loadOptions())
			for _, e := range errs {
				fmt.Fprintln(cmd.ErrOrStderr(), e.Error())
			}
			return printRecipes(cmd.OutOrStdout(), ok, asJSON)
		},
	}
	list.Flags().StringVar(&cfgFile, "config", "", "configuration file (default "+defaultConfigFile+" when it exists)")
	list.Flags().BoolVar(&asJSON, "json", false, "JSON lines instead of a table")
	cmd.AddCommand(validate, list)
	return cmd
}

func orDefault(p string) string {
	if p == "" {
		return defaultConfigFile
	}
	return p
}

// pathSources turns command-line paths into recipe sources: a directory, or a single file
// (its directory, filtered to that file by the loader's name check being per directory).
func pathSources(args []string) ([]engine.Source, error) {
	var out []engine.Source
	for _, a := range args {
		if a == "builtin" {
			out = append(out, engine.Source{Name: "builtin", FS: builtin.FS(), Dir: "."})
			continue
		}
		st, err := os.Stat(a)
		if err != nil {
			return nil, badInput("%s: %v", a, unwrapPath(err))
		}
		if st.IsDir() {
			out = append(out, engine.DirSource(a))
			continue
		}
		out = append(out, engine.FileSource(a))
	}
	return out, nil
}

func printRecipes(w io.Writer, rs []*recipes.Recipe, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range rs {
			if err := enc.Encode(map[string]any{"name": r.Name, "kind": r.Kind, "mechanism": r.Mechanism,
				"importance": r.Importance, "enabled": r.Enabled, "reactions": len(r.Reactions), "prevent": r.Prevent,
				"file": r.File, "line": r.Line}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMECHANISM\tIMPORTANCE\tREACTIONS\tENABLED\tWHERE")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%s\n", r.Name, r.Mechanism, r.Importance, len(r.Reactions), r.Enabled, r.Where())
	}
	return tw.Flush()
}
