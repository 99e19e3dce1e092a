package quickjswasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// Value is a pointer to a heap JSValue inside the instance (owned unless said otherwise).
type Value uint32

// HostFunc serves a JS call of a function made with NewFunction. args are borrowed JSValue
// pointers valid only during the call. It returns an owned JSValue pointer, or 0 for undefined.
type HostFunc func(in *Instance, args []Value) Value

// Options for a new instance.
type Options struct {
	MaxMemory  uint64           // bytes; rounded down to pages
	StackLimit uint32           // QuickJS stack limit in bytes (<= 1 MiB)
	Now        func() time.Time // Date and clocks inside the instance
}

// Instance is one QuickJS runtime and context in one wasm instance. Not goroutine-safe.
type Instance struct {
	eng  *Engine
	mod  api.Module
	raw  *mmapMemory
	lay  layout
	ctx  context.Context
	opts Options

	rt, jsctx  uint32
	valSize    uint32
	undefined  Value
	null       Value
	scratchArg uint32 // 8 pointers of scratch for Call argv

	sets  [][]api.Function // per nesting depth, one api.Function per export we use
	stack [][]uint64
	depth int

	funcs []HostFunc
	// User is the embedder's per-instance state (host functions reach it through in).
	User     any
	deadline time.Time
	timedOut bool
	stop     bool // set by the host to interrupt the running JS
	oom      bool
	broken   error
}

// Exports we call, in a fixed order.
type fn int

const (
	fMalloc fn = iota
	fFree
	fCtors
	fNewRuntime
	fNewContext
	fSetMaxStack
	fEnableInterrupt
	fNewString
	fGetString
	fFreeCString
	fNewFloat64
	fGetFloat64
	fFreeValue
	fDupValue
	fEval
	fCall
	fResolveException
	fDump
	fGlobal
	fGetProp
	fSetProp
	fNewFunction
	fUndefined
	fNull
	fArgv
	fTypeof
	fFreeVoid
	fNewObject
	fTrue
	fFalse
	fBjsonDecode
	fNewArrayBuffer
	fCount
)

var exportOf = [fCount]string{
	fMalloc: ExportMalloc, fFree: ExportFree, fCtors: ExportCtors, fNewRuntime: ExportNewRuntime,
	fNewContext: ExportNewContext, fSetMaxStack: ExportRuntimeSetMaxStackSize,
	fEnableInterrupt: ExportRuntimeEnableInterruptHandler, fNewString: ExportNewString,
	fGetString: ExportGetString, fFreeCString: ExportFreeCString, fNewFloat64: ExportNewFloat64,
	fGetFloat64: ExportGetFloat64, fFreeValue: ExportFreeValuePointer, fDupValue: ExportDupValuePointer,
	fEval: ExportEval, fCall: ExportCall, fResolveException: ExportResolveException, fDump: ExportDump,
	fGlobal: ExportGetGlobalObject, fGetProp: ExportGetProp, fSetProp: ExportSetProp,
	fNewFunction: ExportNewFunction, fUndefined: ExportGetUndefined, fNull: ExportGetNull,
	fArgv: ExportArgvGetJSValueConstPointer, fTypeof: ExportTypeof, fFreeVoid: ExportFreeVoidPointer,
	fNewObject: ExportNewObject, fTrue: ExportGetTrue, fFalse: ExportGetFalse,
	fBjsonDecode: ExportBjsonDecode, fNewArrayBuffer: ExportNewArrayBuffer,
}

// ErrOutOfMemory reports that the instance hit its memory cap.
var ErrOutOfMemory = errors.New("out of memory")

// NewInstance creates a fresh QuickJS runtime and context.
func (e *Engine) NewInstance(ctx context.Context, o Options) (*Instance, error) {
	in := &Instance{eng: e, opts: o}
	if in.opts.Now == nil {
		in.opts.Now = time.Now
	}
	if err := e.instantiate(ctx, pagesOf(o.MaxMemory), in, nil); err != nil {
		return nil, err
	}
	if err := in.boot(); err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

func pagesOf(b uint64) uint32 {
	p := b / PageSize
	if p > 65536 {
		p = 65536
	}
	return uint32(p)
}

func (in *Instance) boot() error {
	if _, err := in.call(fCtors); err != nil {
		return err
	}
	rt, err := in.call(fNewRuntime)
	if err != nil || rt == 0 {
		return fmt.Errorf("QTS_NewRuntime: %v", err)
	}
	in.rt = uint32(rt)
	stack := in.opts.StackLimit
	if stack == 0 || stack > 1<<20 {
		stack = 1 << 20
	}
	if _, err := in.call(fSetMaxStack, rt, uint64(stack)); err != nil {
		return err
	}
	if _, err := in.call(fEnableInterrupt, rt); err != nil {
		return err
	}
	c, err := in.call(fNewContext, rt, 0)
	if err != nil || c == 0 {
		return fmt.Errorf("QTS_NewContext: %v", err)
	}
	in.jsctx = uint32(c)
	sz, err := in.call(fArgv, 0, 1)
	if err != nil {
		return err
	}
	in.valSize = uint32(sz)
	u, err := in.call(fUndefined)
	if err != nil {
		return err
	}
	in.undefined = Value(u)
	n, err := in.call(fNull)
	if err != nil {
		return err
	}
	in.null = Value(n)
	p, err := in.call(fMalloc, 64)
	if err != nil || p == 0 {
		return fmt.Errorf("malloc scratch: %v", err)
	}
	in.scratchArg = uint32(p)
	return nil
}

// Close frees the wasm instance and its memory.
func (in *Instance) Close() {
	if in.mod != nil {
		_ = in.mod.Close(context.Background())
		in.mod = nil
	}
	if in.raw != nil {
		in.raw.Free()
		in.raw = nil
	}
}

// Broken reports the trap that made the instance unusable, if any.
func (in *Instance) Broken() error { return in.broken }

// OOM reports whether the instance hit its memory cap since the last Reset of the flags.
func (in *Instance) OOM() bool { return in.oom }

// TimedOut reports whether the last run was interrupted by its deadline.
func (in *Instance) TimedOut() bool { return in.timedOut }

// MemoryBytes is the current size of the linear memory.
func (in *Instance) MemoryBytes() uint64 { return uint64(in.mod.Memory().Size()) }

func (in *Instance) mem() []byte { return in.raw.buf[:in.mod.Memory().Size()] }

func (in *Instance) now() time.Time { return in.opts.Now() }

func (in *Instance) shouldInterrupt() bool {
	if in.stop {
		return true
	}
	if !in.deadline.IsZero() && time.Now().After(in.deadline) {
		in.timedOut = true
		return true
	}
	return false
}

// SetClock changes the clock behind Date and the wasm clocks.
func (in *Instance) SetClock(now func() time.Time) { in.opts.Now = now }

// SetDeadline arms the interrupt handler (zero disarms) and clears the run flags.
func (in *Instance) SetDeadline(t time.Time) {
	in.deadline, in.timedOut, in.stop = t, false, false
}

// Interrupt makes the running JS stop at its next interrupt check (uncatchable).
func (in *Instance) Interrupt() { in.stop = true }

func (in *Instance) fns() ([]api.Function, []uint64) {
	for len(in.sets) <= in.depth {
		set := make([]api.Function, fCount)
		for k := fn(0); k < fCount; k++ {
			set[k] = in.mod.ExportedFunction(exportOf[k])
		}
		in.sets = append(in.sets, set)
		in.stack = append(in.stack, make([]uint64, 10))
	}
	return in.sets[in.depth], in.stack[in.depth]
}

// call invokes an export. Any wasm error (a trap, a host panic) breaks the instance for good.
func (in *Instance) call(f fn, args ...uint64) (uint64, error) {
	if in.broken != nil {
		return 0, in.broken
	}
	set, st := in.fns()
	copy(st, args)
	in.depth++
	err := set[f].CallWithStack(in.ctx, st)
	in.depth--
	if err != nil {
		var te *TrapError
		if errors.As(err, &te) {
			in.broken = te
		} else {
			in.broken = &TrapError{Reason: err.Error()}
		}
		return 0, in.broken
	}
	return st[0], nil
}

func (in *Instance) cstring(p uint32, max int) string {
	m := in.mem()
	if p == 0 || uint64(p) >= uint64(len(m)) {
		return ""
	}
	end := len(m)
	if max > 0 && int(p)+max < end {
		end = int(p) + max
	}
	b := m[p:end]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// withCString writes s NUL-terminated into wasm memory for the duration of f.
func (in *Instance) withCString(s string, f func(p uint32) (uint64, error)) (uint64, error) {
	p, err := in.call(fMalloc, uint64(len(s)+1))
	if err != nil {
		return 0, err
	}
	if p == 0 {
		in.oom = true
		return 0, ErrOutOfMemory
	}
	m := in.mem()
	copy(m[p:], s)
	m[int(p)+len(s)] = 0
	r, err := f(uint32(p))
	if _, ferr := in.call(fFree, p); err == nil {
		err = ferr
	}
	return r, err
}

// NewString makes a JS string. s must not contain NUL (the C interface stops there).
func (in *Instance) NewString(s string) (Value, error) {
	r, err := in.withCString(s, func(p uint32) (uint64, error) {
		return in.call(fNewString, uint64(in.jsctx), uint64(p))
	})
	return Value(r), err
}

// Undefined is the constant undefined, usable as an argument of Call; never Free it.
func (in *Instance) Undefined() Value { return in.undefined }

// NewNumber makes a JS number.
func (in *Instance) NewNumber(f float64) (Value, error) {
	r, err := in.call(fNewFloat64, uint64(in.jsctx), api.EncodeF64(f))
	return Value(r), err
}

// Null returns an owned null.
func (in *Instance) Null() (Value, error) {
	r, err := in.call(fDupValue, uint64(in.jsctx), uint64(in.null))
	return Value(r), err
}

// Bool returns an owned boolean.
func (in *Instance) Bool(b bool) (Value, error) {
	f := fFalse
	if b {
		f = fTrue
	}
	c, err := in.call(f)
	if err != nil {
		return 0, err
	}
	r, err := in.call(fDupValue, uint64(in.jsctx), c)
	return Value(r), err
}

// String converts a value to a Go string (ToString semantics: may run JS for objects).
func (in *Instance) String(v Value) (string, error) {
	p, err := in.call(fGetString, uint64(in.jsctx), uint64(v))
	if err != nil {
		return "", err
	}
	if p == 0 {
		return "", fmt.Errorf("value is not convertible to a string")
	}
	s := in.cstring(uint32(p), 0)
	_, err = in.call(fFreeCString, uint64(in.jsctx), p)
	return s, err
}

// Number converts a value to float64 (NaN when it is not a number).
func (in *Instance) Number(v Value) (float64, error) {
	r, err := in.call(fGetFloat64, uint64(in.jsctx), uint64(v))
	return api.DecodeF64(r), err
}

// Typeof returns the JS type name of v.
func (in *Instance) Typeof(v Value) (string, error) {
	p, err := in.call(fTypeof, uint64(in.jsctx), uint64(v))
	if err != nil {
		return "", err
	}
	s := in.cstring(uint32(p), 16)
	_, err = in.call(fFree, p)
	return s, err
}

// Free releases an owned value.
func (in *Instance) Free(v Value) {
	if v != 0 && in.broken == nil {
		_, _ = in.call(fFreeValue, uint64(in.jsctx), uint64(v))
	}
}

// JSError is an exception thrown by JS.
type JSError struct {
	Name    string `json:"name"`
	Message string `json:"message"`
	Stack   string `json:"stack"`
}

func (e *JSError) Error() string {
	if e.Name == "" {
		return e.Message
	}
	return e.Name + ": " + e.Message
}

// result turns a returned value into (value, JS exception or trap).
func (in *Instance) result(r uint64, err error) (Value, error) {
	if err != nil {
		return 0, err
	}
	ex, err := in.call(fResolveException, uint64(in.jsctx), r)
	if err != nil {
		return 0, err
	}
	if ex == 0 {
		return Value(r), nil
	}
	in.Free(Value(r))
	defer in.Free(Value(ex))
	return 0, in.describe(Value(ex))
}

func (in *Instance) describe(ex Value) error {
	// Describe with the deadline disarmed: a thrown object's toJSON must not be interrupted
	// half-way, and it is bounded by the stop flag the host keeps.
	p, err := in.call(fDump, uint64(in.jsctx), uint64(ex))
	if err != nil {
		return err
	}
	raw := in.cstring(uint32(p), 64<<10)
	_, _ = in.call(fFreeCString, uint64(in.jsctx), p)
	je := &JSError{}
	var obj map[string]any
	if json.Unmarshal([]byte(raw), &obj) == nil {
		je.Name, _ = obj["name"].(string)
		je.Message, _ = obj["message"].(string)
		je.Stack, _ = obj["stack"].(string)
	}
	if je.Name == "" && je.Message == "" {
		var s string
		if json.Unmarshal([]byte(raw), &s) == nil {
			raw = s
		}
		je.Name, je.Message = "Error", "uncaught "+raw
	}
	if in.oom && je.Message == "out of memory" {
		return ErrOutOfMemory
	}
	return je
}

// Eval evaluates global code and returns its completion value.
func (in *Instance) Eval(code, filename string) (Value, error) {
	var r uint64
	_, err := in.withCString(filename, func(fp uint32) (uint64, error) {
		return in.withCString(code, func(cp uint32) (uint64, error) {
			var err error
			r, err = in.call(fEval, uint64(in.jsctx), uint64(cp), uint64(len(code)), uint64(fp), 0, 0)
			return r, err
		})
	})
	return in.result(r, err)
}

// Global returns the global object (owned).
func (in *Instance) Global() (Value, error) {
	r, err := in.call(fGlobal, uint64(in.jsctx))
	return Value(r), err
}

// Get reads obj[key].
func (in *Instance) Get(obj Value, key string) (Value, error) {
	k, err := in.NewString(key)
	if err != nil {
		return 0, err
	}
	defer in.Free(k)
	r, err := in.call(fGetProp, uint64(in.jsctx), uint64(obj), uint64(k))
	return in.result(r, err)
}

// Set writes obj[key] = v (v is borrowed).
func (in *Instance) Set(obj Value, key string, v Value) error {
	k, err := in.NewString(key)
	if err != nil {
		return err
	}
	defer in.Free(k)
	_, err = in.call(fSetProp, uint64(in.jsctx), uint64(obj), uint64(k), uint64(v))
	return err
}

// Call calls f with this = undefined and borrowed arguments (at most 8).
func (in *Instance) Call(f Value, args ...Value) (Value, error) {
	if len(args) > 8 {
		return 0, fmt.Errorf("too many arguments")
	}
	for k, a := range args {
		in.putU32(in.scratchArg+uint32(4*k), uint32(a))
	}
	r, err := in.call(fCall, uint64(in.jsctx), uint64(f), uint64(in.undefined), uint64(len(args)), uint64(in.scratchArg))
	return in.result(r, err)
}

// NewFunction makes a JS function served by h.
func (in *Instance) NewFunction(name string, arity int, h HostFunc) (Value, error) {
	id := len(in.funcs)
	in.funcs = append(in.funcs, h)
	r, err := in.withCString(name, func(p uint32) (uint64, error) {
		return in.call(fNewFunction, uint64(in.jsctx), uint64(p), uint64(arity), 0, uint64(id))
	})
	return Value(r), err
}

func (in *Instance) hostCall(id, this, argc, argv uint32) uint32 {
	if int(id) >= len(in.funcs) || argc > 64 {
		return 0
	}
	args := make([]Value, argc) // not reused: a helper may re-enter JS and nest another call
	for k := range args {
		args[k] = Value(argv + uint32(k)*in.valSize)
	}
	return uint32(in.funcs[id](in, args))
}
