package sandbox

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The event is handed to a reaction lazily (one member parsed on first read). These cases
// check that data still behaves exactly as the plain object JSON.parse would give.
func TestLazyEventBehavesAsPlainObject(t *testing.T) {
	const ev = `{"uuid":"u-9","timestamp":"t","event_type":"execution","metadata":{"name":"n","kind":"k"},` +
		`"process":{"pid":4242,"exe":"/tmp/a \"b\" {c}","argv":["x","}{"],"u":"\u00e9\n"},` +
		`"background":{"ancestry":[{"pid":1},{"pid":4242}]},"base":{"background":{"ancestry":[{"pid":1},{"pid":4242}]}},` +
		`"scenario":[{"hostname":"h"}]}`
	const plain = `{"uuid":"u-9","timestamp":"t","event_type":"execution","metadata":{"name":"n","kind":"k"},` +
		`"process":{"pid":4242,"exe":"/tmp/a \"b\" {c}","argv":["x","}{"],"u":"é\n"},` +
		`"background":{"ancestry":[{"pid":1},{"pid":4242}]},"base":{"background":{"ancestry":[{"pid":1},{"pid":4242}]}},` +
		`"scenario":[{"hostname":"h"}]}`
	h := newHost(t)
	for _, tc := range []struct {
		name, event, code, want string
	}{
		{"keys in order", ev, `Object.keys(data).join(",")`, "uuid,timestamp,event_type,metadata,process,background,base,scenario"},
		{"stringify", ev, `JSON.stringify(data)`, plain},
		{"escapes and nesting", ev, `data.process.exe + "|" + data.process.argv[1] + "|" + data.process.u`, "/tmp/a \"b\" {c}|}{|é\n"},
		{"base is background", ev, `String(data.base.background === data.background)`, "true"},
		{"base differs", strings.Replace(ev, `"base":{"background":{"ancestry":[{"pid":1},{"pid":4242}]}}`, `"base":{"background":{"ancestry":[]}}`, 1),
			`data.base.background.ancestry.length + " " + data.background.ancestry.length`, "0 2"},
		{"for-in", ev, `var ks = []; for (var k in data) ks.push(k); ks.length + " " + ks[4]`, "8 process"},
		{"write and add", ev, `data.process.pid = 1; data.extra = 2; data.process.pid + " " + Object.keys(data).pop()`, "1 extra"},
		{"delete", ev, `delete data.metadata; ("metadata" in data) + " " + Object.keys(data).length`, "false 7"},
		{"in and own", ev, `("process" in data) + " " + data.hasOwnProperty("scenario") + " " + ("nope" in data)`, "true true false"},
		{"descriptor", ev, `var d = Object.getOwnPropertyDescriptor(data, "metadata"); d.value.kind + " " + d.enumerable + " " + d.writable`, "k true true"},
		{"freeze", ev, `Object.freeze(data); Object.isFrozen(data) + " " + data.process.pid + " " + JSON.stringify(data).length`, "true 4242 " + itoa(utf8.RuneCountInString(plain))},
		{"spread and assign", ev, `var c = Object.assign({}, data); var s = {...data}; c.process.pid + " " + s.scenario[0].hostname`, "4242 h"},
		{"entries", ev, `Object.entries(data).length + " " + Object.values(data)[0]`, "8 u-9"},
		{"missing member", ev, `typeof data.flow + " " + typeof data.file`, "undefined undefined"},
		{"array event (whole)", `[1,2,3]`, `Array.isArray(data) + " " + data.length`, "true 3"},
		{"__proto__ member (whole)", `{"__proto__":{"x":1},"a":2}`, `Object.keys(data).join(",") + " " + data.x`, "__proto__,a undefined"},
		{"duplicate member (whole)", `{"a":1,"a":2}`, `data.a + " " + Object.keys(data).length`, "2 1"},
		{"empty object", `{}`, `Object.keys(data).length + ""`, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := compile(t, h, "function process(data) { Info(String((function () { "+body(tc.code)+" })())); }", Limits{})
			env, _ := newEnv(t, "strict")
			tr := p.Run(context.Background(), env, "u", []byte(tc.event))
			if tr.Status != StatusOK {
				t.Fatalf("status %s: %+v", tr.Status, tr.Error)
			}
			if len(tr.Logs) != 1 || tr.Logs[0].Msg != tc.want {
				t.Fatalf("got %q, want %q", tr.Logs, tc.want)
			}
		})
	}
}

// body makes a function body of an expression, or of statements whose last one is the result.
func body(code string) string {
	parts := strings.Split(code, "; ")
	parts[len(parts)-1] = "return " + parts[len(parts)-1]
	return strings.Join(parts, "; ")
}

func itoa(n int) string { return strconv.Itoa(n) }

// JSON.stringify and JSON.parse are wrapped (bounded depth and size); everything else about
// them must stay standard.
func TestJSONStaysStandard(t *testing.T) {
	h := newHost(t)
	for _, tc := range []struct{ name, code, want string }{
		{"plain", `JSON.stringify({a: 1, b: [1, "x", null, true], c: {d: {}}})`, `{"a":1,"b":[1,"x",null,true],"c":{"d":{}}}`},
		{"undefined and functions", `String(JSON.stringify(undefined)) + JSON.stringify({f: function () {}, u: undefined, n: NaN})`, `undefined{"n":null}`},
		{"space", `JSON.stringify({a: [1]}, null, 1)`, "{\n \"a\": [\n  1\n ]\n}"},
		{"function replacer", `JSON.stringify({a: 1, b: 2}, function (k, v) { return k === "b" ? undefined : v })`, `{"a":1}`},
		{"array replacer", `JSON.stringify({a: 1, b: 2, c: {a: 3, z: 4}}, ["a", "c"])`, `{"a":1,"c":{"a":3}}`},
		{"toJSON", `JSON.stringify({d: {toJSON: function () { return "t" }}})`, `{"d":"t"}`},
		{"depth 500 is fine", `var a = 1; for (var i = 0; i < 500; i++) a = [a]; JSON.stringify(a).length`, "1001"},
		{"cycle still a TypeError", `var o = {}; o.o = o; var n = ""; try { JSON.stringify(o) } catch (e) { n = e.name }; n`, "TypeError"},
		{"parse and reviver", `JSON.stringify(JSON.parse('{"a":[1,2],"b":"x"}', function (k, v) { return typeof v === "number" ? v * 10 : v }))`, `{"a":[10,20],"b":"x"}`},
		{"parse error", `var n = ""; try { JSON.parse("{") } catch (e) { n = e.name }; n`, "SyntaxError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := compile(t, h, "function process(data) { Info(String((function () { "+body(tc.code)+" })())); }", Limits{})
			env, _ := newEnv(t, "strict")
			tr := p.Run(context.Background(), env, "u", []byte(testEvent))
			if tr.Status != StatusOK {
				t.Fatalf("status %s: %+v", tr.Status, tr.Error)
			}
			if len(tr.Logs) != 1 || tr.Logs[0].Msg != tc.want {
				t.Fatalf("got %q, want %q", tr.Logs, tc.want)
			}
		})
	}
}
