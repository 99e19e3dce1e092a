package builtin

import (
	"io/fs"
	"path"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/engine/match"
	"github.com/jibril-rt/jibril/recipes/testrun"
)

// TestRecipesMatchTheirFixtures runs the engine's real matcher over the fixtures: every fixture
// a recipe's tests use must match that recipe, except the ones its allowlists (arbitrary
// irrelevant groups) exist to drop, and look-alikes of other recipes must not match.
func TestRecipesMatchTheirFixtures(t *testing.T) {
	// Fixtures a recipe's reaction tests use for its in-reaction allowlist, which the recipe
	// itself already filters out before any reaction runs.
	filtered := map[string]bool{
		"setuid_bit_set/chmod_setuid_dpkg":                 true,
		"account_files_modification/passwd_dpkg_postinst":  true,
		"pam_tampering/pam_dpkg":                           true,
		"ssh_authorized_keys_tampering/authkeys_cloudinit": true,
		"cloud_metadata_access/metadata_agent":             true,
		"exec_from_temp_dir/gobuild_exec":                  true,
		"ssh_private_key_read/sshkey_ssh":                  true,
		"self_deleting_binary/unlink_other":                true,
	}
	// Look-alikes: recipe/fixture pairs that must not match.
	extra := []string{
		"reverse_shell_execution/bindshell_nc", "reverse_shell_execution/bindshell_socat",
		"reverse_shell_execution/nmap_exec", "bind_shell_execution/revshell_devtcp",
		"bind_shell_execution/revshell_nc_internal", "bind_shell_execution/revshell_socat",
		"crypto_miner_stratum_args/xmrig_exec", "crypto_miner_binary/stratum_exec",
		"exec_from_hidden_dir/tmp_exec", "exec_from_temp_dir/hidden_home_exec",
		"crypto_mining_pool_domain/dyndns_peer", "suspicious_domain_access/pool_peer",
		"cloud_metadata_access/pool_peer", "sudoers_modification/passwd_python",
		"ssh_private_key_read/authkeys_bash", "setuid_bit_set/setcap_exec",
	}
	for _, p := range extra {
		filtered[p] = true
	}

	lib := loadLibrary(t)
	matchers := map[string]*match.Matcher{}
	for _, r := range lib.recipes {
		m, err := match.Compile(r)
		if err != nil {
			t.Fatalf("%s: compile: %v", r.Where(), err)
		}
		matchers[r.Name] = m
	}
	pairs := map[string]bool{}
	tests, _ := fs.Glob(FS(), "*"+testrun.Suffix)
	for _, n := range tests {
		data, err := fs.ReadFile(FS(), n)
		if err != nil {
			t.Fatal(err)
		}
		var tf struct {
			Recipe string `yaml:"recipe"`
			Cases  []struct {
				Event any `yaml:"event"`
			} `yaml:"cases"`
		}
		if err := yaml.Unmarshal(data, &tf); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		for _, c := range tf.Cases {
			if p, ok := c.Event.(string); ok {
				pairs[tf.Recipe+"/"+strings.TrimSuffix(path.Base(p), ".json")] = true
			}
		}
	}
	for _, p := range extra {
		pairs[p] = true
	}
	keys := make([]string, 0, len(pairs))
	for k := range pairs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		recipe, fixture, _ := strings.Cut(k, "/")
		m := matchers[recipe]
		if m == nil {
			t.Errorf("%s: no recipe %s", k, recipe)
			continue
		}
		data, err := fs.ReadFile(FS(), "fixtures/"+fixture+".json")
		if err != nil {
			t.Fatal(err)
		}
		ev, err := event.Decode(data)
		if err != nil {
			t.Fatalf("%s: %v", fixture, err)
		}
		if got, want := m.Match(ev), !filtered[k]; got != want {
			t.Errorf("recipe %s on fixtures/%s.json: match %v, want %v", recipe, fixture, got, want)
		}
	}
}
