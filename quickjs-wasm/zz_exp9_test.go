package quickjswasm

import (
	"context"
	"testing"
	"time"
)

func TestExpLazySections(t *testing.T) {
	ctx := context.Background()
	e, _ := NewEngine(ctx, EngineConfig{})
	in, _ := e.NewInstance(ctx, Options{MaxMemory: 32 << 20, StackLimit: 1 << 20})
	_, err := in.Eval(`
var KEYS = ["uuid","timestamp","event_type","note","metadata","process","file","flow","background","base","scenario"];
var G = {}; var DESCS = {};
KEYS.forEach(function(k){ G[k] = function(){ var v = 1; Object.defineProperty(this, k, {value: v, writable: true, enumerable: true, configurable: true}); return v; };
  DESCS[k] = {get: G[k], enumerable: true, configurable: true}; });
function lit(){ return {get uuid(){return 1}, get timestamp(){return 1}, get event_type(){return 1}, get note(){return 1}, get metadata(){return 1}, get process(){return 1}, get file(){return 1}, get flow(){return 1}, get background(){return 1}, get base(){return 1}, get scenario(){return 1}}; }
`, "x")
	if err != nil {
		t.Fatal(err)
	}
	cases := [][2]string{
		{"empty", `(function(){})`},
		{"literal 11 getters", `(function(){ return lit() })`},
		{"defineProperties 11", `(function(){ return Object.defineProperties({}, DESCS) })`},
		{"defProps + 3 redefine", `(function(){ var o = Object.defineProperties({}, DESCS); o.process; o.flow; o.background; return o })`},
		{"plain 11", `(function(){ return {uuid:1,timestamp:1,event_type:1,note:1,metadata:1,process:1,file:1,flow:1,background:1,base:1,scenario:1} })`},
	}
	for _, c := range cases {
		f, err := in.Eval(c[1], "x")
		if err != nil {
			t.Fatal(c[0], err)
		}
		n := 20000
		start := time.Now()
		for i := 0; i < n; i++ {
			r, err := in.Call(f)
			if err != nil {
				t.Fatal(err)
			}
			in.Free(r)
		}
		t.Logf("%-22s %.3f us", c[0], float64(time.Since(start).Nanoseconds())/float64(n)/1000)
	}
}
