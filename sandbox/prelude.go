package sandbox

// prelude runs once in every template instance, before the snapshot. It receives the native
// helper functions, wraps each in a JS function that coerces its arguments, and then locks the
// realm down: intrinsics are frozen and the global object is sealed, so nothing one invocation
// does can be seen by the next (what must persist goes through the data store).
//
// Argument coercion happens here, in JS, so that a hostile toString or toJSON runs before the
// host is entered and never re-enters it: the host only ever receives strings.
//
// QuickJS's native JSON code never polls the interrupt handler, and JSON.stringify is quadratic
// in the nesting depth: a reaction could run for minutes past its deadline. JSON.stringify is
// therefore always given a replacer of ours (wrapping the caller's) that calls back into JS for
// every value and refuses nesting deeper than 512, which bounds the quadratic part to
// milliseconds; an array replacer keeps the listed keys in the object's own order. JSON.parse
// refuses texts over 1 MiB (parsing is linear: that bounds it to milliseconds too). The prelude returns the native
// JSON.parse for the host's own use on the event it hands over.
const prelude = `(function (natives, table, kind, name) {
  "use strict";
  var g = globalThis;
  var NJS = JSON.stringify, NJP = JSON.parse;
  Object.defineProperty(JSON, "stringify", { value: function stringify(value, replacer, space) {
    var user = typeof replacer === "function" ? replacer : null, allow = null, first = true;
    if (Array.isArray(replacer)) {
      allow = new Set();
      for (var i = 0; i < replacer.length; i++) {
        var x = replacer[i];
        if (typeof x === "string" || typeof x === "number" || x instanceof String || x instanceof Number) allow.add(String(x));
      }
    }
    var depths = new Map();
    return NJS(value, function (k, v) {
      var top = first;
      first = false;
      if (allow !== null && !top && !Array.isArray(this) && !allow.has(k)) return undefined;
      if (user !== null) v = user.call(this, k, v);
      if (v !== null && typeof v === "object") {
        var d = (depths.get(this) || 0) + 1;
        if (d > 512) throw new RangeError("JSON.stringify: nesting deeper than 512");
        depths.set(v, d);
      }
      return v;
    }, space);
  }, writable: true, configurable: true });
  Object.defineProperty(JSON, "parse", { value: function parse(text, reviver) {
    var s = String(text);
    if (s.length > 1048576) throw new RangeError("JSON.parse: text longer than 1 MiB");
    return NJP(s, reviver);
  }, writable: true, configurable: true });
  var str = function (v) {
    if (typeof v === "string") return v;
    if (v !== null && typeof v === "object") { var j = JSON.stringify(v); return j === undefined ? "" : j; }
    return String(v);
  };
  var NativeError = g.Error;
  var wrap = function (h, ret, fname) {
    // Named parameters rather than arguments: QuickJS allocates an arguments object on every
    // call of a function that mentions it. Trailing undefined arguments are dropped, so that
    // Jibril's optional arguments (NetBlockIp(), DataPush(v)) keep their meaning.
    var f = function (a, b, c) {
      // Jibril's Error(msg) logs, yet reactions still need "new Error(...)" and instanceof.
      if (new.target !== undefined) {
        if (fname !== "Error") throw new TypeError(fname + " is not a constructor");
        return Reflect.construct(NativeError, b === undefined ? (a === undefined ? [] : [a]) : [a, b], new.target);
      }
      var r;
      if (c !== undefined) r = h(str(a), str(b), str(c));
      else if (b !== undefined) r = h(str(a), str(b));
      else if (a !== undefined) r = h(str(a));
      else r = h();
      if (ret === "json") return r === null || r === undefined ? null : JSON.parse(r);
      return r;
    };
    Object.defineProperty(f, "name", { value: fname });
    if (fname === "Error") {
      f.prototype = NativeError.prototype;
      Object.setPrototypeOf(f, NativeError);
    }
    return f;
  };
  for (var i = 0; i < table.length; i++) {
    var t = table[i];
    Object.defineProperty(g, t[0], { value: wrap(natives[i], t[1], t[0]), enumerable: false, writable: false, configurable: false });
  }
  Math.random = natives[table.length];
  Object.defineProperty(g, "kind", { value: kind, enumerable: true, writable: false, configurable: false });
  Object.defineProperty(g, "name", { value: name, enumerable: true, writable: false, configurable: false });
  Object.defineProperty(g, "uuid", { value: "", enumerable: true, writable: true, configurable: false });
  Object.defineProperty(g, "data", { value: null, enumerable: true, writable: true, configurable: false });
  // Freeze every object reachable from the global object (intrinsics, prototypes, helpers).
  var seen = new Set();
  var stack = [g];
  while (stack.length) {
    var o = stack.pop();
    if (o === null || (typeof o !== "object" && typeof o !== "function") || seen.has(o)) continue;
    seen.add(o);
    var keys = Reflect.ownKeys(o);
    for (var k = 0; k < keys.length; k++) {
      var d = Reflect.getOwnPropertyDescriptor(o, keys[k]);
      if (!d) continue;
      if ("value" in d) stack.push(d.value);
      if (d.get) stack.push(d.get);
      if (d.set) stack.push(d.set);
    }
    stack.push(Object.getPrototypeOf(o));
    if (o !== g) Object.freeze(o);
  }
  var own = Reflect.ownKeys(g);
  for (var m = 0; m < own.length; m++) {
    var key = own[m];
    if (key === "data" || key === "uuid") continue;
    var desc = Reflect.getOwnPropertyDescriptor(g, key);
    if (desc.configurable || desc.writable) {
      if ("value" in desc) desc.writable = false;
      desc.configurable = false;
      Object.defineProperty(g, key, desc);
    }
  }
  Object.preventExtensions(g);
  return NJP;
})`

// factory wraps the reaction so that evaluating it yields a function returning a fresh
// process function: the reaction's top-level declarations are re-created on every invocation.
// The reaction keeps its own strictness (sloppy unless it says "use strict") and its line numbers.
func factory(source string) string {
	return "(function () {" + source + "\n;return typeof process === \"function\" ? process : undefined;\n})"
}

// runnerMaker turns a factory into the function the host calls once per event. SEC(i) is the
// host function that returns the JSON text of the event's i-th top-level member.
//
// The event arrives lazily: data is a proxy over an object that has every member of the event,
// each a placeholder until first read, when that member alone is parsed (JSON.parse costs what
// the keys cost, and a reaction reads two or three of the ten members). Reads, writes, deletes,
// Object.keys, for-in, JSON.stringify and Object.freeze behave as on the plain object. When the
// host passes the JSON text instead, the event is parsed whole.
const runnerMaker = `(function (factory, SEC, JP) {
  "use strict";
  var g = globalThis, RGOPD = Reflect.getOwnPropertyDescriptor, RPE = Reflect.preventExtensions, RSET = Reflect.set;
  var P = Object.freeze(Object.create(null));
  // Shapes are numbered by the host per instance (a shape's text is sent once, then only its
  // number); each keeps its keys and the proxy handler shared by every event of that shape.
  var shapes = [];
  var load = function (h, t, k) {
    var v = k === h.s.alias ? { background: GET.call(h, t, "background") } : JP(SEC(h.s.idx[k]));
    RSET(t, k, v);
    return v;
  };
  var GET = function (t, k) { var v = t[k]; return v === P ? load(this, t, k) : v; };
  var GOPD = function (t, k) { if (t[k] === P) load(this, t, k); return RGOPD(t, k); };
  var PE = function (t) {
    var ks = this.s.keys;
    for (var i = 0; i < ks.length; i++) if (t[ks[i]] === P) load(this, t, ks[i]);
    return RPE(t);
  };
  var define = function (id, text) {
    var parts = text === "" ? [] : text.split("\x1f"), keys = [], idx = Object.create(null), alias = "";
    for (var i = 0; i < parts.length; i++) {
      var k = parts[i];
      if (k.charCodeAt(0) === 1) { k = k.slice(1); alias = k; }
      keys.push(k);
      idx[k] = i;
    }
    var s = { keys: keys, idx: idx, alias: alias };
    shapes[id] = { keys: keys, handler: { get: GET, getOwnPropertyDescriptor: GOPD, preventExtensions: PE, s: s } };
  };
  var lazy = function (id) {
    var e = shapes[id], t = {}, ks = e.keys;
    for (var i = 0; i < ks.length; i++) t[ks[i]] = P;
    return new Proxy(t, e.handler);
  };
  // run(uuid, shapeID, shapeText, json): a json string is the whole event, parsed here;
  // otherwise the event is lazy, of shape shapeID, whose text comes along the first time the
  // host uses that number. With no argument at all it is the load-time probe.
  return function (u, id, text, json) {
    if (u === undefined) return typeof factory() === "function";
    if (typeof text === "string") define(id, text);
    g.uuid = u;
    var d = typeof json === "string" ? JP(json) : lazy(id);
    g.data = d;
    try {
      var p = factory();
      if (typeof p !== "function") throw new TypeError("the reaction defines no process(data) function");
      p(d);
    } finally {
      g.data = null;
      g.uuid = "";
    }
  };
})`
