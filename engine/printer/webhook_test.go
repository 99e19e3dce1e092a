package printer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// sink is a webhook receiver that answers with a scripted list of statuses
// (the last one repeats) and records every accepted batch.
type sink struct {
	t        *testing.T
	mu       sync.Mutex
	statuses []int
	attempts int
	batches  [][]int // seq of each event, per accepted batch
	headers  []http.Header
}

func newSink(t *testing.T, statuses ...int) (*sink, *httptest.Server) {
	s := &sink{t: t, statuses: statuses}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	status := http.StatusOK
	if len(s.statuses) > 0 {
		status = s.statuses[min(s.attempts, len(s.statuses)-1)]
	}
	s.attempts++
	s.headers = append(s.headers, r.Header.Clone())
	if err != nil || r.Method != http.MethodPost {
		s.t.Errorf("bad request: method %s, body error %v", r.Method, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if status == http.StatusOK {
		var evs []struct {
			Seq *int `json:"seq"`
		}
		if err := json.Unmarshal(body, &evs); err != nil {
			s.t.Errorf("body is not a JSON array of events: %v: %q", err, body)
		}
		var batch []int
		for _, ev := range evs {
			if ev.Seq == nil {
				s.t.Errorf("event without seq in %q", body)
				continue
			}
			batch = append(batch, *ev.Seq)
		}
		s.batches = append(s.batches, batch)
	}
	w.WriteHeader(status)
}

func (s *sink) snapshot() (attempts int, batches [][]int, events []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		events = append(events, b...)
	}
	return s.attempts, append([][]int(nil), s.batches...), events
}

func webhookSet(t *testing.T, url string, q QueueOptions, mod func(*WebhookOptions)) *Set {
	t.Helper()
	opts := WebhookOptions{URL: url, Timeout: 10 * time.Second, Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
		Headers: map[string]string{"Authorization": "Bearer s3cret", "X-Jibril-Host": "node-1"}}
	if mod != nil {
		mod(&opts)
	}
	w, err := NewWebhook(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(nil, Entry{w, q})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWebhookBatchesArriveComplete(t *testing.T) {
	sk, srv := newSink(t)
	// A batch fills only by count here: the delay never expires in the test.
	s := webhookSet(t, srv.URL+"/ingest?token=q", QueueOptions{Size: 100, Batch: 5, MaxDelay: time.Hour}, nil)
	for i := range 12 {
		s.Print(event(i))
	}
	waitFor(t, "two full batches", func() bool { _, b, _ := sk.snapshot(); return len(b) == 2 })
	closeSet(t, s) // the last 2 events are flushed by Close
	attempts, batches, events := sk.snapshot()
	wantSeq(t, events, 0, 12)
	if attempts != 3 || len(batches[0]) != 5 || len(batches[1]) != 5 || len(batches[2]) != 2 {
		t.Fatalf("attempts %d, batches %v: want 5+5+2 in 3 requests", attempts, batches)
	}
	for _, h := range sk.headers {
		if h.Get("Content-Type") != "application/json" || h.Get("Authorization") != "Bearer s3cret" || h.Get("X-Jibril-Host") != "node-1" {
			t.Fatalf("headers = %v", h)
		}
	}
	if st := stats(t, s, "webhook"); st.Printed != 12 || st.Failed+st.Dropped != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestWebhookFlushInterval(t *testing.T) {
	sk, srv := newSink(t)
	s := webhookSet(t, srv.URL, QueueOptions{Size: 100, Batch: 100, MaxDelay: 10 * time.Millisecond}, nil)
	t.Cleanup(func() { closeSet(t, s) })
	for i := range 3 {
		s.Print(event(i))
	}
	// Without Close and with a batch far from full, the delay alone sends them.
	waitFor(t, "the partial batch", func() bool { _, _, e := sk.snapshot(); return len(e) == 3 })
	_, _, events := sk.snapshot()
	wantSeq(t, events, 0, 3)
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name         string
		statuses     []int
		wantAttempts int
		wantPrinted  uint64
		wantFailed   uint64
	}{
		{"503 twice then 200", []int{503, 503, 200}, 3, 3, 0},
		{"429 then 200", []int{429, 200}, 2, 3, 0},
		{"400 is final", []int{400, 200}, 1, 0, 3},
		{"404 is final", []int{404, 200}, 1, 0, 3},
		{"redirect is not followed", []int{307, 200}, 1, 0, 3},
		{"500 until attempts run out", []int{500}, 3, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sk, srv := newSink(t, tt.statuses...)
			s := webhookSet(t, srv.URL, QueueOptions{Size: 10, Batch: 3, MaxDelay: time.Hour}, nil)
			for i := range 3 {
				s.Print(event(i))
			}
			closeSet(t, s)
			attempts, batches, events := sk.snapshot()
			if attempts != tt.wantAttempts {
				t.Fatalf("server saw %d attempts, want %d", attempts, tt.wantAttempts)
			}
			if tt.wantPrinted > 0 {
				if len(batches) != 1 {
					t.Fatalf("accepted batches %v, want exactly one", batches)
				}
				wantSeq(t, events, 0, 3)
			}
			if st := stats(t, s, "webhook"); st.Printed != tt.wantPrinted || st.Failed != tt.wantFailed || st.Dropped != 0 {
				t.Fatalf("stats = %+v, want printed %d failed %d", st, tt.wantPrinted, tt.wantFailed)
			}
		})
	}
}

func TestWebhookNetworkErrorsAreRetried(t *testing.T) {
	// A server that accepts and hangs up before answering.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	s := webhookSet(t, "http://"+ln.Addr().String(), QueueOptions{Size: 10, Batch: 2}, func(o *WebhookOptions) { o.Attempts = 4 })
	s.Print(event(0))
	s.Print(event(1))
	closeSet(t, s)
	if n := accepted.Load(); n < 4 {
		t.Fatalf("server saw %d connections, want at least 4 (one per attempt)", n)
	}
	if st := stats(t, s, "webhook"); st.Failed != 2 || st.Printed != 0 {
		t.Fatalf("stats = %+v, want 2 failed", st)
	}
}

// hangingServer blocks every request until release is closed, announcing
// each arrival on the returned channel.
func hangingServer(t *testing.T) (url string, arrived <-chan struct{}, release func()) {
	arr := make(chan struct{}, 100)
	rel := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arr <- struct{}{}
		select {
		case <-rel:
		case <-r.Context().Done():
		}
	}))
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(release) // runs before srv.Close, which waits for handlers
	return srv.URL, arr, release
}

func TestWebhookHangingServerNeverBlocksPrint(t *testing.T) {
	url, arrived, release := hangingServer(t)
	s := webhookSet(t, url, QueueOptions{Size: 4, Batch: 1}, func(o *WebhookOptions) { o.Timeout = time.Minute })
	s.Print(event(0))
	<-arrived // the worker is now stuck in the first request
	for i := 1; i <= 100; i++ {
		s.Print(event(i)) // must return at once: 4 fit the queue, 96 are dropped
	}
	if st := stats(t, s, "webhook"); st.Dropped != 96 || st.Printed != 0 {
		t.Fatalf("stats while hanging = %+v, want 96 dropped", st)
	}
	release()
	closeSet(t, s) // drains the 4 queued events
	if st := stats(t, s, "webhook"); st.Printed != 5 || st.Dropped != 96 || st.Failed != 0 {
		t.Fatalf("stats after close = %+v, want printed 5 dropped 96", st)
	}
}

func TestCloseIsBoundedByContext(t *testing.T) {
	url, arrived, _ := hangingServer(t)
	s := webhookSet(t, url, QueueOptions{Size: 10, Batch: 1}, func(o *WebhookOptions) { o.Timeout = time.Minute })
	s.Print(event(0))
	<-arrived
	for i := 1; i <= 5; i++ {
		s.Print(event(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the caller has no time left at all
	if err := s.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	// The in-flight batch is cancelled (failed), the queued ones are dropped.
	waitFor(t, "the worker to give up", func() bool {
		st := stats(t, s, "webhook")
		return st.Failed == 1 && st.Dropped == 5
	})
}

func TestWebhookOptionsValidation(t *testing.T) {
	ok := WebhookOptions{URL: "https://siem.example/x", Timeout: time.Second, Attempts: 1, Backoff: time.Millisecond, MaxBackoff: time.Second}
	tests := []struct {
		name string
		mod  func(*WebhookOptions)
		want string
	}{
		{"ftp", func(o *WebhookOptions) { o.URL = "ftp://x/" }, "scheme must be http or https"},
		{"no host", func(o *WebhookOptions) { o.URL = "http:///x" }, "no host"},
		{"credentials", func(o *WebhookOptions) { o.URL = "https://u:p@x/" }, "credentials"},
		{"header injection", func(o *WebhookOptions) { o.Headers = map[string]string{"X-A": "v\r\nEvil: 1"} }, "control character"},
		{"bad header name", func(o *WebhookOptions) { o.Headers = map[string]string{"X A": "v"} }, "invalid character"},
		{"content type", func(o *WebhookOptions) { o.Headers = map[string]string{"content-type": "text/plain"} }, "Content-Type"},
		{"zero attempts", func(o *WebhookOptions) { o.Attempts = 0 }, "attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			_, err := NewWebhook(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "Evil") {
				t.Fatalf("error echoes a header value: %v", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	base := Config{
		Stdout:  StdoutConfig{Enabled: true},
		File:    FileConfig{Path: "/var/log/jibril/events.jsonl"},
		Webhook: WebhookConfig{URL: "https://siem.example/ingest"},
	}.WithDefaults()
	if err := base.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"webhook scheme", func(c *Config) { c.Webhook.URL = "file:///etc/passwd" }, `printers.webhook.url: scheme must be http or https, got "file"`},
		{"negative max size", func(c *Config) { c.File.MaxSize = -1 }, "printers.file.max_size: must be positive, got -1"},
		{"negative keep", func(c *Config) { c.File.Keep = -2 }, "printers.file.keep:"},
		{"negative queue", func(c *Config) { c.Webhook.Queue = -1 }, "printers.webhook.queue:"},
		{"huge stdout queue", func(c *Config) { c.Stdout.Queue = 1 << 30 }, "printers.stdout.queue:"},
		{"negative batch", func(c *Config) { c.Webhook.Batch = -3 }, "printers.webhook.batch:"},
		{"negative timeout", func(c *Config) { c.Webhook.Timeout = -time.Second }, "printers.webhook.timeout: must be positive"},
		{"negative flush", func(c *Config) { c.Webhook.FlushInterval = -1 }, "printers.webhook.flush_interval:"},
		{"backoff order", func(c *Config) { c.Webhook.MaxBackoff = time.Millisecond }, "printers.webhook.max_backoff:"},
		{"retries", func(c *Config) { c.Webhook.Retries = -5 }, "printers.webhook.retries:"},
		{"header", func(c *Config) { c.Webhook.Headers = map[string]string{"Bad Name": "x"} }, "printers.webhook.headers:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
	// Disabled sections are not checked.
	off := Config{File: FileConfig{MaxSize: -1}, Webhook: WebhookConfig{Batch: -1}}
	if err := off.Validate(); err != nil {
		t.Fatalf("disabled sections validated: %v", err)
	}
}

func TestConfigFromKoanfBuildsSet(t *testing.T) {
	sk, srv := newSink(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "events.jsonl")
	yml := `
printers:
  stdout: {enabled: true}
  file:
    path: ` + logPath + `
    max_size: 10MiB
    keep: 3
  webhook:
    url: ` + srv.URL + `
    headers: {Authorization: "Bearer abc"}
    batch: 2
    flush_interval: 5ms
    timeout: 2s
    retries: 1
    backoff: 1ms
    queue: 64
`
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	k := koanf.New(".")
	if err := k.Load(file.Provider(cfgFile), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if err := k.Unmarshal("printers", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.File.MaxSize != 10<<20 || cfg.File.Keep != 3 || cfg.Webhook.FlushInterval != 5*time.Millisecond ||
		cfg.Webhook.Timeout != 2*time.Second || cfg.Webhook.Batch != 2 || cfg.Webhook.Queue != 64 ||
		cfg.Webhook.Headers["Authorization"] != "Bearer abc" || !cfg.Stdout.Enabled {
		t.Fatalf("config not decoded as written: %+v", cfg)
	}

	// A plain number also decodes into max_size.
	k2 := koanf.New(".")
	if err := os.WriteFile(cfgFile, []byte("printers: {file: {path: x, max_size: 4096}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k2.Load(file.Provider(cfgFile), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	var c2 Config
	if err := k2.Unmarshal("printers", &c2); err != nil || c2.File.MaxSize != 4096 {
		t.Fatalf("numeric max_size: %v, %+v", err, c2.File)
	}

	out, err := os.CreateTemp(dir, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s, err := New(cfg, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range s.Stats() {
		names = append(names, st.Printer)
	}
	if strings.Join(names, ",") != "stdout,file,webhook" {
		t.Fatalf("printers = %v", names)
	}
	for i := range 3 {
		s.Print(event(i))
	}
	closeSet(t, s)
	for _, p := range []string{out.Name(), logPath} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		wantSeq(t, seqs(t, data), 0, 3)
	}
	_, _, events := sk.snapshot()
	wantSeq(t, events, 0, 3)
	if h := sk.headers[0].Get("Authorization"); h != "Bearer abc" {
		t.Fatalf("Authorization = %q", h)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Config{Webhook: WebhookConfig{URL: "gopher://x"}}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "printers.webhook.url") {
		t.Fatalf("err = %v", err)
	}
	_, err = New(Config{File: FileConfig{Path: filepath.Join(t.TempDir(), "missing", "f")}}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "printers.file.path") {
		t.Fatalf("err = %v", err)
	}
}
