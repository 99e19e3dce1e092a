package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDaemonConfig(t *testing.T) {
	dir := t.TempDir()
	file := func(content string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".yaml")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	defaults := defaultDaemonConfig("/var/lib/jibril")
	for _, tc := range []struct {
		name    string
		content string // "" = no file at all
		env     []string
		wantErr string
		check   func(t *testing.T, c daemonConfig)
	}{
		{name: "no file: defaults", check: func(t *testing.T, c daemonConfig) {
			if !c.Builtin || c.DefaultPolicy != "strict" || c.DryRun || !c.Printers.Stdout.Enabled || c.StateDir != "/var/lib/jibril" {
				t.Fatalf("defaults = %+v", c)
			}
		}},
		{name: "file values", content: "dry_run: true\nrecipes: [/etc/jibril/recipes]\nlimits:\n  timeout: 150ms\nrecipe_modes:\n  exec_from_temp_dir: enforce\n",
			check: func(t *testing.T, c daemonConfig) {
				if !c.DryRun || len(c.Recipes) != 1 || c.Limits.Timeout != 150*time.Millisecond || c.RecipeModes["exec_from_temp_dir"] != "enforce" {
					t.Fatalf("config = %+v", c)
				}
			}},
		{name: "environment over file", content: "dry_run: false\n",
			env: []string{"JIBRIL_DRY_RUN=true", "JIBRIL_PRINTERS__FILE__PATH=/var/log/jibril.jsonl", "HOME=/root"},
			check: func(t *testing.T, c daemonConfig) {
				if !c.DryRun || c.Printers.File.Path != "/var/log/jibril.jsonl" {
					t.Fatalf("config = %+v", c)
				}
			}},
		{name: "unknown key names its line", content: "dry_run: true\nprinters:\n  stdout: {enabled: true}\n  colour: red\n", wantErr: ":4: "},
		{name: "unknown top-level key", content: "state_dir: /x\nrecipies: [a]\n", wantErr: ":2: "},
		{name: "wrong type", content: "limits:\n  timeout: soon\n", wantErr: "timeout"},
		{name: "bad yaml", content: "dry_run: [\n", wantErr: "yaml"},
		{name: "unknown env keys are ignored", content: "dry_run: true\n", env: []string{"JIBRIL_DRYRUN=1", "JIBRIL_ATTACK_TIMES=/x", "JIBRIL_PRINTERS__COLOUR=red"},
			check: func(t *testing.T, c daemonConfig) {
				if !c.DryRun || len(c.EnvIgnored) != 3 {
					t.Fatalf("config = %+v", c)
				}
			}},
		{name: "bad env value", content: "dry_run: true\n", env: []string{"JIBRIL_LIMITS__TIMEOUT=soon"}, wantErr: "environment JIBRIL_*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, explicit := filepath.Join(dir, "missing.yaml"), false
			if tc.content != "" {
				path, explicit = file(tc.content), true
			}
			c, err := loadDaemonConfig(path, explicit, tc.env, defaults)
			if err == nil {
				err = c.validate()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("err = %v, want one line containing %q", err, tc.wantErr)
				}
				if tc.content != "" && tc.env == nil && !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestDaemonConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*daemonConfig)
		wantErr string
	}{
		{"default policy", func(c *daemonConfig) { c.DefaultPolicy = "lax" }, "default_policy"},
		{"recipe mode", func(c *daemonConfig) { c.RecipeModes = map[string]string{"x": "kill"} }, "recipe_modes.x"},
		{"protect cidr", func(c *daemonConfig) { c.Protect.CIDRs = []string{"10.0.0.0/33"} }, "protect.cidrs[0]"},
		{"min pid", func(c *daemonConfig) { c.Protect.MinPID = 1 }, "protect.min_pid"},
		{"loss action", func(c *daemonConfig) { c.Loss.Action = "panic" }, "loss.action"},
		{"metrics address", func(c *daemonConfig) { c.Metrics.Address = "0.0.0.0:9464" }, "metrics.address"},
		{"limits", func(c *daemonConfig) { c.Limits.Timeout = 0 }, "limits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := defaultDaemonConfig("/var/lib/jibril")
			c.Printers = c.Printers.WithDefaults()
			if err := c.validate(); err != nil {
				t.Fatalf("defaults do not validate: %v", err)
			}
			tc.mutate(&c)
			err := c.validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
