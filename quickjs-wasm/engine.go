package quickjswasm

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// PageSize is the wasm page size.
const PageSize = 65536

// Engine owns the wazero runtime, the host module every instance imports, and the compiled
// module per memory cap. It is safe for concurrent use; instances are not.
type Engine struct {
	rt       wazero.Runtime
	mu       sync.Mutex
	variants map[uint32]*variant
}

type variant struct {
	cm  wazero.CompiledModule
	lay layout
}

// EngineConfig configures an Engine.
type EngineConfig struct {
	// CacheDir keeps wazero's compiled code on disk ("" = in memory only).
	CacheDir string
}

type instKey struct{}

// NewEngine starts a runtime. Compilation happens on the first instance of each memory cap.
func NewEngine(ctx context.Context, cfg EngineConfig) (*Engine, error) {
	rc := wazero.NewRuntimeConfigCompiler()
	if cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache %s: %w", cfg.CacheDir, err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	e := &Engine{rt: wazero.NewRuntimeWithConfig(ctx, rc), variants: map[uint32]*variant{}}
	if err := e.instantiateHost(ctx); err != nil {
		_ = e.rt.Close(ctx)
		return nil, err
	}
	return e, nil
}

// Close releases the runtime and every instance made from it.
func (e *Engine) Close(ctx context.Context) error { return e.rt.Close(ctx) }

func (e *Engine) variant(ctx context.Context, maxPages uint32) (*variant, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if v, ok := e.variants[maxPages]; ok {
		return v, nil
	}
	bin, lay, err := defineMemory(moduleWasm, maxPages)
	if err != nil {
		return nil, fmt.Errorf("prepare quickjs wasm: %w", err)
	}
	cm, err := e.rt.CompileModule(ctx, bin)
	if err != nil {
		return nil, fmt.Errorf("compile quickjs wasm: %w", err)
	}
	v := &variant{cm: cm, lay: lay}
	e.variants[maxPages] = v
	return v, nil
}

// MinMemory is the smallest memory cap the module accepts.
func (e *Engine) MinMemory() (uint64, error) {
	_, lay, err := defineMemory(moduleWasm, math.MaxUint16)
	if err != nil {
		return 0, err
	}
	return uint64(lay.minPages) * PageSize, nil
}

func from(ctx context.Context) *Instance { return ctx.Value(instKey{}).(*Instance) }

// instantiateHost registers module "a": the imports of the Emscripten build, served by Go.
// Nothing here reaches the host system: no files, no environment, no real clock.
func (e *Engine) instantiateHost(ctx context.Context) error {
	i32, i64, f64 := api.ValueTypeI32, api.ValueTypeI64, api.ValueTypeF64
	b := e.rt.NewHostModuleBuilder(ImportModule)
	fn := func(name string, params, results []api.ValueType, f api.GoModuleFunc) {
		b.NewFunctionBuilder().WithGoModuleFunction(f, params, results).Export(name)
	}
	t := func(v ...api.ValueType) []api.ValueType { return v }
	fn(ImportCallFunction, t(i32, i32, i32, i32, i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) {
		in := from(ctx)
		s[0] = uint64(in.hostCall(uint32(s[4]), uint32(s[1]), uint32(s[2]), uint32(s[3])))
	})
	fn(ImportShouldInterrupt, t(i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) {
		s[0] = 0
		if from(ctx).shouldInterrupt() {
			s[0] = 1
		}
	})
	fn(ImportLoadModuleSource, t(i32, i32, i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) { s[0] = 0 })
	fn(ImportNormalizeModule, t(i32, i32, i32, i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) { s[0] = 0 })
	fn(ImportFreeHostRef, t(i32, i32), nil, func(ctx context.Context, m api.Module, s []uint64) {})
	fn(ImportAssertFail, t(i32, i32, i32, i32), nil, func(ctx context.Context, m api.Module, s []uint64) {
		panic(&TrapError{Reason: "assertion failed inside QuickJS: " + from(ctx).cstring(uint32(s[0]), 256)})
	})
	fn(ImportAbort, nil, nil, func(ctx context.Context, m api.Module, s []uint64) {
		panic(&TrapError{Reason: "QuickJS called abort"})
	})
	fn(ImportProcExit, t(i32), nil, func(ctx context.Context, m api.Module, s []uint64) {
		panic(&TrapError{Reason: fmt.Sprintf("QuickJS called exit(%d)", int32(s[0]))})
	})
	fn(ImportKeepaliveClear, nil, nil, func(ctx context.Context, m api.Module, s []uint64) {})
	fn(ImportDateNow, nil, t(f64), func(ctx context.Context, m api.Module, s []uint64) {
		s[0] = math.Float64bits(float64(from(ctx).now().UnixMicro()) / 1000)
	})
	fn(ImportClockTimeGet, t(i32, i64, i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) {
		in := from(ctx)
		if !in.putU64(uint32(s[2]), uint64(in.now().UnixNano())) {
			s[0] = 28 // EINVAL
			return
		}
		s[0] = 0
	})
	fn(ImportResizeHeap, t(i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) {
		requested := uint32(s[0])
		s[0] = 0
		if from(ctx).grow(m, requested) {
			s[0] = 1
		}
	})
	fn(ImportEnvironSizesGet, t(i32, i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) {
		in := from(ctx)
		in.putU32(uint32(s[0]), 0)
		in.putU32(uint32(s[1]), 0)
		s[0] = 0
	})
	fn(ImportEnvironGet, t(i32, i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) { s[0] = 0 })
	fn(ImportFdClose, t(i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) { s[0] = 52 })
	fn(ImportFdSeek, t(i32, i64, i32, i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) { s[0] = 70 })
	fn(ImportFdWrite, t(i32, i32, i32, i32), t(i32), func(ctx context.Context, m api.Module, s []uint64) {
		// QuickJS only writes diagnostics; count them as written and drop them.
		in := from(ctx)
		iov, n := uint32(s[1]), uint32(s[2])
		var total uint32
		for k := uint32(0); k < n && k < 1024; k++ {
			l, _ := in.getU32(iov + 8*k + 4)
			total += l
		}
		in.putU32(uint32(s[3]), total)
		s[0] = 0
	})
	fn(ImportLocaltime, t(i64, i32), nil, func(ctx context.Context, m api.Module, s []uint64) {
		from(ctx).localtime(int64(s[0]), uint32(s[1]))
	})
	fn(ImportTzset, t(i32, i32, i32, i32), nil, func(ctx context.Context, m api.Module, s []uint64) {
		in := from(ctx)
		in.putU32(uint32(s[0]), 0)
		in.putU32(uint32(s[1]), 0)
		in.putBytes(uint32(s[2]), []byte("UTC\x00"))
		in.putBytes(uint32(s[3]), []byte("UTC\x00"))
	})
	fn(ImportSetitimer, t(i32, f64), t(i32), func(ctx context.Context, m api.Module, s []uint64) { s[0] = 0 })
	_, err := b.Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("instantiate quickjs host module: %w", err)
	}
	return nil
}

// TrapError is a failure that leaves the instance unusable.
type TrapError struct{ Reason string }

func (e *TrapError) Error() string { return "wasm trap: " + e.Reason }

func (in *Instance) localtime(sec int64, p uint32) {
	t := time.Unix(sec, 0).UTC()
	vals := []int32{int32(t.Second()), int32(t.Minute()), int32(t.Hour()), int32(t.Day()),
		int32(t.Month()) - 1, int32(t.Year() - 1900), int32(t.Weekday()), int32(t.YearDay() - 1), 0, 0}
	for k, v := range vals {
		in.putU32(p+uint32(4*k), uint32(v))
	}
}

func (in *Instance) grow(m api.Module, requested uint32) bool {
	mem := m.Memory()
	cur := mem.Size()
	if requested <= cur {
		return true
	}
	pages := (uint64(requested) - uint64(cur) + PageSize - 1) / PageSize
	if _, ok := mem.Grow(uint32(pages)); !ok {
		in.oom = true
		return false
	}
	return true
}

func (in *Instance) putU32(p, v uint32) bool {
	if uint64(p)+4 > uint64(len(in.mem())) {
		return false
	}
	binary.LittleEndian.PutUint32(in.mem()[p:], v)
	return true
}

func (in *Instance) putU64(p uint32, v uint64) bool {
	if uint64(p)+8 > uint64(len(in.mem())) {
		return false
	}
	binary.LittleEndian.PutUint64(in.mem()[p:], v)
	return true
}

func (in *Instance) getU32(p uint32) (uint32, bool) {
	if uint64(p)+4 > uint64(len(in.mem())) {
		return 0, false
	}
	return binary.LittleEndian.Uint32(in.mem()[p:]), true
}

func (in *Instance) putBytes(p uint32, b []byte) bool {
	if uint64(p)+uint64(len(b)) > uint64(len(in.mem())) {
		return false
	}
	copy(in.mem()[p:], b)
	return true
}

// instantiate makes a new module instance with its own memory; when snap is set, the memory
// starts as the snapshot's image instead of the module's initial data.
func (e *Engine) instantiate(ctx context.Context, maxPages uint32, in *Instance, snap *Snapshot) error {
	v, err := e.variant(ctx, maxPages)
	if err != nil {
		return err
	}
	alloc := &allocator{}
	ictx := experimental.WithMemoryAllocator(context.WithValue(ctx, instKey{}, in), alloc)
	in.ctx = context.WithValue(context.Background(), instKey{}, in)
	mod, err := e.rt.InstantiateModule(ictx, v.cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return fmt.Errorf("instantiate quickjs: %w", err)
	}
	if alloc.err != nil || alloc.last == nil {
		_ = mod.Close(ctx)
		return fmt.Errorf("instantiate quickjs: %v", alloc.err)
	}
	in.mod, in.raw, in.lay = mod, alloc.last, v.lay
	if snap != nil {
		if err := in.restore(snap); err != nil {
			_ = mod.Close(ctx)
			return err
		}
	}
	return nil
}
