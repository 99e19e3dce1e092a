// Command qjsgen checks the fetched QuickJS-NG wasm against its sha256 pin, derives the
// import/export name table from the Emscripten glue, checks every name against the wasm's real
// signatures and writes the Go table. Any mismatch fails the build with one clear line.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/jibril-rt/jibril/quickjs-wasm/glue"
)

func main() {
	wasmPath := flag.String("wasm", "", "path of emscripten-module.wasm")
	gluePath := flag.String("glue", "", "path of emscripten-module.mjs")
	sumPath := flag.String("sha256", "", "file with the expected sha256 of the wasm and the glue")
	out := flag.String("out", "", "Go file to write")
	pkg := flag.String("pkg", "quickjswasm", "Go package name")
	origin := flag.String("origin", "", "what the files are, for the header")
	flag.Parse()
	if err := run(*wasmPath, *gluePath, *sumPath, *out, *pkg, *origin); err != nil {
		fmt.Fprintln(os.Stderr, "qjsgen:", err)
		os.Exit(1)
	}
}

func run(wasmPath, gluePath, sumPath, out, pkg, origin string) error {
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return err
	}
	src, err := os.ReadFile(gluePath)
	if err != nil {
		return err
	}
	if sumPath != "" {
		if err := checkSums(sumPath, map[string][]byte{"emscripten-module.wasm": wasm, "emscripten-module.mjs": src}); err != nil {
			return err
		}
	}
	t, err := glue.Parse(string(src))
	if err != nil {
		return fmt.Errorf("%s: %w", gluePath, err)
	}
	if err := glue.Check(context.Background(), t, wasm); err != nil {
		return fmt.Errorf("%s against %s: %w", gluePath, wasmPath, err)
	}
	return os.WriteFile(out, glue.GoSource(t, pkg, origin), 0o644)
}

// checkSums reads "sha256  name" lines (sha256sum format) and compares each named file.
func checkSums(path string, files map[string][]byte) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			return fmt.Errorf("%s: malformed line %q", path, line)
		}
		content, ok := files[f[1]]
		if !ok {
			continue
		}
		sum := sha256.Sum256(content)
		if got := hex.EncodeToString(sum[:]); got != f[0] {
			return fmt.Errorf("%s: sha256 %s, pinned %s (%s)", f[1], got, f[0], path)
		}
		checked++
	}
	if checked != len(files) {
		return fmt.Errorf("%s: pins %d of the %d files", path, checked, len(files))
	}
	return nil
}
