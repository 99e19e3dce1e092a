// Package glue reads the Emscripten JavaScript glue shipped with the QuickJS-NG wasm build and
// recovers the minified import and export names, then checks every one of them against the real
// signatures in the wasm binary. The names change with every release of the npm package, so the
// table is derived at build time and any name or signature we do not recognise fails the build.
package glue

import (
	"context"
	"fmt"
	"go/format"
	"regexp"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Sig is a wasm function signature written as "params>results" with one letter per value:
// i (i32), I (i64), F (f64).
type Sig string

// Table maps our semantic names to the wasm names of one build.
type Table struct {
	ImportModule string            // the wasm import module name ("a")
	MemoryImport string            // the import name of the linear memory
	Imports      map[string]string // semantic name -> wasm import name
	Exports      map[string]string // semantic name -> wasm export name
}

// importRule recognises one import by the shape of its JavaScript body.
type importRule struct {
	name  string
	sig   Sig
	match func(body string) bool
}

func contains(subs ...string) func(string) bool {
	return func(body string) bool {
		for _, s := range subs {
			if !strings.Contains(body, s) {
				return false
			}
		}
		return true
	}
}

func matches(re string) func(string) bool {
	r := regexp.MustCompile(re)
	return r.MatchString
}

// importRules lists every import the glue is allowed to have. An import body that matches no
// rule, or more than one, is an error: a new release must be looked at by a person.
var importRules = []importRule{
	{"call_function", "iiiii>i", contains("callbacks.callFunction(")},
	{"should_interrupt", "i>i", contains("callbacks.shouldInterrupt(")},
	{"load_module_source", "iii>i", contains("callbacks.loadModuleSource(")},
	{"normalize_module", "iiii>i", contains("callbacks.normalizeModule(")},
	{"free_host_ref", "ii>", contains("callbacks.freeHostRef(")},
	{"assert_fail", "iiii>", contains("Assertion failed")},
	{"abort", ">", matches(`^\(\)=>\w+\(""\)$`)},
	{"keepalive_clear", ">", matches(`^\(\)=>\{\w+=!1;\w+=0\}$`)},
	{"date_now", ">F", matches(`^\(\)=>Date\.now\(\)$`)},
	{"clock_time_get", "iIi>i", contains("performance.now()", "BigInt(")},
	{"resize_heap", "i>i", contains(".grow(")},
	{"environ_get", "ii>i", func(b string) bool { return strings.Contains(b, "Infinity)+1") }},
	{"environ_sizes_get", "ii>i", contains(".length;", "+1;")},
	{"fd_close", "i>i", matches(`^\(\)=>52$`)},
	{"fd_seek", "iIii>i", matches(`^function\(\)\{return 70\}$`)},
	{"fd_write", "iiii>i", contains(".decode(", "10===")},
	{"localtime", "Ii>", contains("getTimezoneOffset", "getSeconds")},
	{"tzset", "iiii>", contains("padStart", "UTC")},
	{"setitimer", "iF>i", contains("setTimeout", "clearTimeout")},
	{"proc_exit", "i>", nil}, // an identifier bound to the exit function; see classifyIdent
}

// ExportSigs are the exports we know, with their signatures. The QTS_* ones come from the
// package's ffi.d.ts; pointers and sizes are i32, the two doubles are f64.
var ExportSigs = map[string]Sig{
	"malloc": "i>i", "free": "i>", "ctors": ">",
	"stack_restore": "i>", "stack_alloc": "i>i", "stack_current": ">i", "timer_expired": "iF>",
	"QTS_Throw": "ii>i", "QTS_NewError": "i>i", "QTS_RuntimeSetMemoryLimit": "ii>",
	"QTS_RuntimeComputeMemoryUsage": "ii>i", "QTS_RuntimeDumpMemoryUsage": "i>i",
	"QTS_RecoverableLeakCheck": ">i", "QTS_BuildIsSanitizeLeak": ">i",
	"QTS_RuntimeSetMaxStackSize": "ii>", "QTS_GetUndefined": ">i", "QTS_GetNull": ">i",
	"QTS_GetFalse": ">i", "QTS_GetTrue": ">i", "QTS_NewHostRef": "ii>i", "QTS_GetHostRefId": "i>i",
	"QTS_NewRuntime": ">i", "QTS_FreeRuntime": "i>", "QTS_NewContext": "ii>i",
	"QTS_FreeContext": "i>", "QTS_FreeValuePointer": "ii>", "QTS_FreeValuePointerRuntime": "ii>",
	"QTS_FreeVoidPointer": "ii>", "QTS_FreeCString": "ii>", "QTS_DupValuePointer": "ii>i",
	"QTS_NewObject": "i>i", "QTS_NewObjectProto": "ii>i", "QTS_NewArray": "i>i",
	"QTS_NewArrayBuffer": "iii>i", "QTS_NewFloat64": "iF>i", "QTS_GetFloat64": "ii>F",
	"QTS_NewString": "ii>i", "QTS_GetString": "ii>i", "QTS_GetArrayBuffer": "ii>i",
	"QTS_GetArrayBufferLength": "ii>i", "QTS_NewSymbol": "iii>i",
	"QTS_GetSymbolDescriptionOrKey": "ii>i", "QTS_IsGlobalSymbol": "ii>i",
	"QTS_IsJobPending": "i>i", "QTS_ExecutePendingJob": "iii>i", "QTS_GetProp": "iii>i",
	"QTS_GetPropNumber": "iii>i", "QTS_SetProp": "iiii>", "QTS_DefineProp": "iiiiiiiii>",
	"QTS_GetOwnPropertyNames": "iiiii>i", "QTS_Call": "iiiii>i", "QTS_ResolveException": "ii>i",
	"QTS_Dump": "ii>i", "QTS_Eval": "iiiiii>i", "QTS_GetModuleNamespace": "ii>i",
	"QTS_Typeof": "ii>i", "QTS_GetLength": "iii>i", "QTS_IsEqual": "iiii>i",
	"QTS_GetGlobalObject": "i>i", "QTS_NewPromiseCapability": "ii>i", "QTS_PromiseState": "ii>i",
	"QTS_PromiseResult": "ii>i", "QTS_TestStringArg": "i>", "QTS_GetDebugLogEnabled": "i>i",
	"QTS_SetDebugLogEnabled": "ii>", "QTS_BuildIsDebug": ">i", "QTS_BuildIsAsyncify": ">i",
	"QTS_NewFunction": "iiiii>i", "QTS_ArgvGetJSValueConstPointer": "ii>i",
	"QTS_RuntimeEnableInterruptHandler": "i>", "QTS_RuntimeDisableInterruptHandler": "i>",
	"QTS_RuntimeEnableModuleLoader": "ii>", "QTS_RuntimeDisableModuleLoader": "i>",
	"QTS_bjson_encode": "ii>i", "QTS_bjson_decode": "ii>i",
}

var (
	reImportObj  = regexp.MustCompile(`var \w+=\{(\w+):(\w+)\};if\(\w+\.instantiateWasm\)`)
	reMemory     = regexp.MustCompile(`(\w+)=new WebAssembly\.Memory\(`)
	reExportsVar = regexp.MustCompile(`(\w+)=(\w+)=(\w+)\.exports;`)
	reNamed      = regexp.MustCompile(`\w+\._(\w+)=(\w+)\.([\w$]+);`)
	reInternal   = regexp.MustCompile(`(\w+)=(\w+)\.([\w$]+)`)
	reCtor       = regexp.MustCompile(`(\w+)\.([\w$]+)\(\);\w+\?\.\(`)
)

// Parse recovers the name table from the glue source.
func Parse(src string) (*Table, error) {
	t := &Table{Imports: map[string]string{}, Exports: map[string]string{}}
	m := reImportObj.FindStringSubmatch(src)
	if m == nil {
		return nil, fmt.Errorf("glue: import object (`var c={a:ya}`) not found")
	}
	t.ImportModule = m[1]
	objVar := m[2]
	mem := reMemory.FindStringSubmatch(src)
	if mem == nil {
		return nil, fmt.Errorf("glue: memory construction not found")
	}
	entries, err := objectLiteral(src, objVar)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.body == mem[1] {
			if t.MemoryImport != "" {
				return nil, fmt.Errorf("glue: two memory imports (%s, %s)", t.MemoryImport, e.key)
			}
			t.MemoryImport = e.key
			continue
		}
		name, err := classify(src, e.body)
		if err != nil {
			return nil, fmt.Errorf("glue: import %q: %w", e.key, err)
		}
		if prev, dup := t.Imports[name]; dup {
			return nil, fmt.Errorf("glue: imports %q and %q both look like %s", prev, e.key, name)
		}
		t.Imports[name] = e.key
	}
	if t.MemoryImport == "" {
		return nil, fmt.Errorf("glue: no memory import")
	}
	if err := parseExports(src, t); err != nil {
		return nil, err
	}
	return t, nil
}

func classify(src, body string) (string, error) {
	var found []string
	for _, r := range importRules {
		if r.match != nil && r.match(body) {
			found = append(found, r.name)
		}
	}
	if len(found) == 0 && regexp.MustCompile(`^\w+$`).MatchString(body) {
		// An import bound to a named function: only the exit function is expected.
		def := regexp.MustCompile(regexp.QuoteMeta(body) + `=a=>\{[^}]*onExit`)
		if def.MatchString(src) {
			found = append(found, "proc_exit")
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("unknown body %.80q", body)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("ambiguous body %.80q matches %v", body, found)
	}
}

func parseExports(src string, t *Table) error {
	ev := reExportsVar.FindStringSubmatch(src)
	if ev == nil {
		return fmt.Errorf("glue: exports assignment (`b=Z=b.exports`) not found")
	}
	start := strings.Index(src, ev[0])
	end := strings.Index(src[start:], "return "+ev[2]+"}")
	if end < 0 {
		return fmt.Errorf("glue: end of exports block not found")
	}
	block := src[start : start+end]
	internal := map[string]string{} // glue variable -> wasm name
	for _, m := range reNamed.FindAllStringSubmatch(block, -1) {
		if _, ok := ExportSigs[m[1]]; !ok {
			return fmt.Errorf("glue: unknown export %s (wasm %q)", m[1], m[3])
		}
		t.Exports[m[1]] = m[3]
	}
	for _, ix := range reInternal.FindAllStringSubmatchIndex(block, -1) {
		if ix[0] > 0 && block[ix[0]-1] != ';' {
			continue // d._X=b.y (named) or part of b=Z=b.exports
		}
		if block[ix[4]:ix[5]] != ev[3] {
			continue
		}
		internal[block[ix[2]:ix[3]]] = block[ix[6]:ix[7]]
	}
	// The glue keeps a few exports in local variables; recognise them by how they are used.
	uses := map[string]*regexp.Regexp{
		"stack_restore": regexp.MustCompile(`0!==h&&(\w+)\(h\)`),
		"stack_alloc":   regexp.MustCompile(`var p=(\w+)\(l\);`),
		"stack_current": regexp.MustCompile(`h=(\w+)\(\)\)`),
		"timer_expired": regexp.MustCompile(`(\w+)\(a,performance\.now\(\)\)`),
	}
	for name, re := range uses {
		m := re.FindStringSubmatch(src)
		if m == nil {
			return fmt.Errorf("glue: use of %s not found", name)
		}
		w, ok := internal[m[1]]
		if !ok {
			return fmt.Errorf("glue: %s variable %s is not an export", name, m[1])
		}
		t.Exports[name] = w
		delete(internal, m[1])
	}
	if len(internal) > 0 {
		return fmt.Errorf("glue: unknown internal exports %v", internal)
	}
	c := reCtor.FindStringSubmatch(src)
	if c == nil || c[1] != ev[2] {
		return fmt.Errorf("glue: constructor call not found")
	}
	t.Exports["ctors"] = c[2]
	for _, need := range []string{"malloc", "free"} {
		if _, ok := t.Exports[need]; !ok {
			return fmt.Errorf("glue: export %s not found", need)
		}
	}
	return nil
}

type entry struct{ key, body string }

// objectLiteral returns the top-level entries of `name={k:v,...}` in minified JavaScript. It
// tracks brackets, strings and template literals, which is all the minifier emits there.
func objectLiteral(src, name string) ([]entry, error) {
	re := regexp.MustCompile(`[,\s]` + regexp.QuoteMeta(name) + `=\{`)
	loc := re.FindStringIndex(src)
	if loc == nil {
		return nil, fmt.Errorf("glue: object %s not found", name)
	}
	i := loc[1]
	var out []entry
	start := i
	// stack holds the closing bracket expected at each nesting level; '`' marks code inside a
	// template substitution, after which the template literal continues.
	var stack []byte
	inTemplate := false
	var quote byte
	for ; i < len(src); i++ {
		c := src[i]
		if inTemplate {
			switch {
			case c == '\\':
				i++
			case c == '`':
				inTemplate = false
			case c == '$' && i+1 < len(src) && src[i+1] == '{':
				stack = append(stack, '`')
				inTemplate = false
				i++
			}
			continue
		}
		if quote != 0 {
			switch c {
			case '\\':
				i++
			case quote:
				quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'':
			quote = c
		case '`':
			inTemplate = true
		case '(':
			stack = append(stack, ')')
		case '[':
			stack = append(stack, ']')
		case '{':
			stack = append(stack, '}')
		case ')', ']', '}':
			if len(stack) == 0 {
				if c != '}' {
					return nil, fmt.Errorf("glue: object %s: unbalanced %q", name, c)
				}
				out = append(out, splitEntry(src[start:i]))
				return out, nil
			}
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if top == '`' && c == '}' {
				inTemplate = true
			} else if top != c {
				return nil, fmt.Errorf("glue: object %s: unbalanced %q", name, c)
			}
		case ',':
			if len(stack) == 0 {
				out = append(out, splitEntry(src[start:i]))
				start = i + 1
			}
		}
	}
	return nil, fmt.Errorf("glue: object %s is not terminated", name)
}

func splitEntry(s string) entry {
	k, v, _ := strings.Cut(strings.TrimSpace(s), ":")
	return entry{key: strings.TrimSpace(k), body: strings.TrimSpace(v)}
}

func sigOf(params, results []api.ValueType) Sig {
	letter := func(v api.ValueType) string {
		switch v {
		case api.ValueTypeI32:
			return "i"
		case api.ValueTypeI64:
			return "I"
		case api.ValueTypeF64:
			return "F"
		case api.ValueTypeF32:
			return "f"
		}
		return "?"
	}
	var b strings.Builder
	for _, p := range params {
		b.WriteString(letter(p))
	}
	b.WriteByte('>')
	for _, r := range results {
		b.WriteString(letter(r))
	}
	return Sig(b.String())
}

// Check compares the table with the wasm binary: every import the wasm declares must be in the
// table with the expected signature, and every export we name must exist with its signature.
func Check(ctx context.Context, t *Table, wasm []byte) error {
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	cm, err := r.CompileModule(ctx, wasm)
	if err != nil {
		return fmt.Errorf("compile wasm: %w", err)
	}
	byWasm := map[string]string{}
	for sem, w := range t.Imports {
		byWasm[w] = sem
	}
	want := map[string]Sig{}
	for _, r := range importRules {
		want[r.name] = r.sig
	}
	seen := map[string]bool{}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != t.ImportModule {
			return fmt.Errorf("wasm imports from unknown module %q", mod)
		}
		sem, ok := byWasm[name]
		if !ok {
			return fmt.Errorf("wasm import %s.%s is not in the glue", mod, name)
		}
		if got := sigOf(f.ParamTypes(), f.ResultTypes()); got != want[sem] {
			return fmt.Errorf("wasm import %s (%s): signature %s, want %s", name, sem, got, want[sem])
		}
		seen[sem] = true
	}
	for sem := range t.Imports {
		if !seen[sem] {
			return fmt.Errorf("glue import %s (%s) is not imported by the wasm", t.Imports[sem], sem)
		}
	}
	mems := cm.ImportedMemories()
	if len(mems) != 1 {
		return fmt.Errorf("wasm imports %d memories, want 1", len(mems))
	}
	if mod, name, _ := mems[0].Import(); mod != t.ImportModule || name != t.MemoryImport {
		return fmt.Errorf("wasm memory import %s.%s, glue says %s.%s", mod, name, t.ImportModule, t.MemoryImport)
	}
	exp := cm.ExportedFunctions()
	for sem, w := range t.Exports {
		f, ok := exp[w]
		if !ok {
			return fmt.Errorf("export %s (%s) missing from the wasm", w, sem)
		}
		if got := sigOf(f.ParamTypes(), f.ResultTypes()); got != ExportSigs[sem] {
			return fmt.Errorf("export %s (%s): signature %s, want %s", w, sem, got, ExportSigs[sem])
		}
	}
	return nil
}

// GoSource renders the table as a Go file of constants for package pkg.
func GoSource(t *Table, pkg, origin string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "// Code generated by qjsgen from %s; DO NOT EDIT.\n\n", origin)
	fmt.Fprintf(&b, "package %s\n\n", pkg)
	fmt.Fprintf(&b, "// ImportModule is the wasm module name of every import.\nconst ImportModule = %q\n\n", t.ImportModule)
	fmt.Fprintf(&b, "// MemoryImport is the import name of the linear memory.\nconst MemoryImport = %q\n\n", t.MemoryImport)
	b.WriteString("// Wasm names of the host functions the module imports.\nconst (\n")
	for _, k := range sortedKeys(t.Imports) {
		fmt.Fprintf(&b, "\tImport%s = %q\n", goName(k), t.Imports[k])
	}
	b.WriteString(")\n\n// Wasm names of the module's exports.\nconst (\n")
	for _, k := range sortedKeys(t.Exports) {
		fmt.Fprintf(&b, "\tExport%s = %q\n", goName(k), t.Exports[k])
	}
	b.WriteString(")\n")
	out, err := format.Source([]byte(b.String()))
	if err != nil {
		panic(fmt.Sprintf("glue: generated Go does not parse: %v", err)) // a bug of ours, not input
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// goName turns "QTS_NewString" into "NewString" and "call_function" into "CallFunction".
func goName(s string) string {
	s = strings.TrimPrefix(s, "QTS_")
	var b strings.Builder
	for _, part := range strings.Split(s, "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
