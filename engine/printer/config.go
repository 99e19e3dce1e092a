package printer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the `printers:` section of the daemon configuration (koanf).
// Zero values mean "use the default" (see WithDefaults); negative or
// malformed values are errors.
//
//	printers:
//	  stdout:  {enabled: true, queue: 4096}
//	  file:    {path: /var/log/jibril/events.jsonl, max_size: 100MiB, keep: 5, queue: 4096}
//	  webhook: {url: https://siem.example/ingest, headers: {Authorization: "Bearer ..."},
//	            batch: 100, flush_interval: 1s, timeout: 5s, retries: 3, queue: 4096}
type Config struct {
	Stdout  StdoutConfig  `koanf:"stdout"`
	File    FileConfig    `koanf:"file"`
	Webhook WebhookConfig `koanf:"webhook"`
}

// StdoutConfig enables JSON lines on standard output.
type StdoutConfig struct {
	Enabled bool `koanf:"enabled"`
	Queue   int  `koanf:"queue"`
}

// FileConfig enables the file printer when Path is set.
type FileConfig struct {
	Path    string   `koanf:"path"`
	MaxSize ByteSize `koanf:"max_size"` // rotate past this size
	Keep    int      `koanf:"keep"`     // rotated files kept: path.1 .. path.Keep
	Queue   int      `koanf:"queue"`
}

// WebhookConfig enables the webhook printer when URL is set.
type WebhookConfig struct {
	URL           string            `koanf:"url"`
	Headers       map[string]string `koanf:"headers"`
	Batch         int               `koanf:"batch"`          // events per POST at most
	FlushInterval time.Duration     `koanf:"flush_interval"` // longest wait for a batch to fill
	Timeout       time.Duration     `koanf:"timeout"`        // per request
	Retries       int               `koanf:"retries"`        // retries after the first try; -1 for none
	Backoff       time.Duration     `koanf:"backoff"`        // first retry delay, doubled per retry
	MaxBackoff    time.Duration     `koanf:"max_backoff"`
	Queue         int               `koanf:"queue"`
}

// Defaults applied by WithDefaults.
const (
	DefaultQueue         = 4096
	DefaultMaxSize       = ByteSize(100 << 20)
	DefaultKeep          = 5
	DefaultBatch         = 100
	DefaultFlushInterval = time.Second
	DefaultTimeout       = 5 * time.Second
	DefaultRetries       = 3
	DefaultBackoff       = 500 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
)

// DefaultConfig is what the daemon uses without a configuration: stdout only.
func DefaultConfig() Config {
	return Config{Stdout: StdoutConfig{Enabled: true}}.WithDefaults()
}

// WithDefaults returns c with every zero value replaced by its default.
func (c Config) WithDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Stdout.Queue, DefaultQueue)
	def(&c.File.Queue, DefaultQueue)
	if c.File.MaxSize == 0 {
		c.File.MaxSize = DefaultMaxSize
	}
	def(&c.File.Keep, DefaultKeep)
	def(&c.Webhook.Queue, DefaultQueue)
	def(&c.Webhook.Batch, DefaultBatch)
	def(&c.Webhook.Retries, DefaultRetries)
	defD(&c.Webhook.FlushInterval, DefaultFlushInterval)
	defD(&c.Webhook.Timeout, DefaultTimeout)
	defD(&c.Webhook.Backoff, DefaultBackoff)
	defD(&c.Webhook.MaxBackoff, DefaultMaxBackoff)
	return c
}

// Validate checks the sections that are enabled and returns the first
// problem as one line naming the field, e.g.
// "printers.webhook.url: scheme must be http or https, got \"ftp\"".
func (c Config) Validate() error {
	const maxQueue = 1 << 20
	queue := func(field string, v int) error {
		if v <= 0 || v > maxQueue {
			return fmt.Errorf("printers.%s: must be between 1 and %d, got %d", field, maxQueue, v)
		}
		return nil
	}
	if c.Stdout.Enabled {
		if err := queue("stdout.queue", c.Stdout.Queue); err != nil {
			return err
		}
	}
	if f := c.File; f.Path != "" {
		if err := queue("file.queue", f.Queue); err != nil {
			return err
		}
		if f.MaxSize <= 0 {
			return fmt.Errorf("printers.file.max_size: must be positive, got %d", f.MaxSize)
		}
		if f.Keep < 0 || f.Keep > 1000 {
			return fmt.Errorf("printers.file.keep: must be between 0 and 1000, got %d", f.Keep)
		}
		if strings.ContainsRune(f.Path, 0) {
			return errors.New("printers.file.path: contains a NUL byte")
		}
	}
	if w := c.Webhook; w.URL != "" {
		if _, err := checkWebhookURL(w.URL); err != nil {
			return fmt.Errorf("printers.webhook.url: %w", err)
		}
		if err := queue("webhook.queue", w.Queue); err != nil {
			return err
		}
		if w.Batch <= 0 || w.Batch > 10000 {
			return fmt.Errorf("printers.webhook.batch: must be between 1 and 10000, got %d", w.Batch)
		}
		if w.Retries < -1 || w.Retries > 100 {
			return fmt.Errorf("printers.webhook.retries: must be between -1 (none) and 100, got %d", w.Retries)
		}
		for _, f := range []struct {
			name string
			d    time.Duration
		}{{"flush_interval", w.FlushInterval}, {"timeout", w.Timeout}, {"backoff", w.Backoff}, {"max_backoff", w.MaxBackoff}} {
			if f.d <= 0 {
				return fmt.Errorf("printers.webhook.%s: must be positive, got %s", f.name, f.d)
			}
		}
		if w.MaxBackoff < w.Backoff {
			return fmt.Errorf("printers.webhook.max_backoff: must be at least backoff (%s), got %s", w.Backoff, w.MaxBackoff)
		}
		for _, k := range slices.Sorted(maps.Keys(w.Headers)) {
			if err := checkHeader(k, w.Headers[k]); err != nil {
				return fmt.Errorf("printers.webhook.headers: %w", err)
			}
		}
	}
	return nil
}

// New builds the printers enabled in cfg (after defaults and validation) and
// the Set in front of them. stdout is where the stdout printer writes.
func New(cfg Config, stdout io.Writer, log *slog.Logger) (*Set, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var entries []Entry
	closeAll := func() {
		for _, e := range entries {
			e.Printer.Close(context.Background())
		}
	}
	if cfg.Stdout.Enabled {
		entries = append(entries, Entry{NewStdout(stdout), QueueOptions{Size: cfg.Stdout.Queue, Batch: 256}})
	}
	if f := cfg.File; f.Path != "" {
		p, err := NewFile(f.Path, int64(f.MaxSize), f.Keep)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("printers.file.path: %w", err)
		}
		entries = append(entries, Entry{p, QueueOptions{Size: f.Queue, Batch: 256}})
	}
	if w := cfg.Webhook; w.URL != "" {
		attempts := w.Retries + 1
		if w.Retries < 0 {
			attempts = 1
		}
		p, err := NewWebhook(WebhookOptions{
			URL: w.URL, Headers: w.Headers, Timeout: w.Timeout, Attempts: attempts,
			Backoff: w.Backoff, MaxBackoff: w.MaxBackoff,
		})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("printers.webhook: %w", err)
		}
		entries = append(entries, Entry{p, QueueOptions{Size: w.Queue, Batch: w.Batch, MaxDelay: w.FlushInterval}})
	}
	s, err := NewSet(log, entries...)
	if err != nil {
		closeAll()
		return nil, err
	}
	return s, nil
}

// ByteSize is a size in bytes that configuration may give as a number or as
// a string with a unit: "512", "64KiB", "10MiB", "1GiB", "10MB", "1G".
type ByteSize int64

// UnmarshalText implements encoding.TextUnmarshaler (used by koanf).
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseByteSize parses a size such as "10MiB" (binary and decimal units).
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: must start with a number", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	units := map[string]int64{
		"": 1, "B": 1,
		"K": 1 << 10, "KB": 1000, "KIB": 1 << 10,
		"M": 1 << 20, "MB": 1000 * 1000, "MIB": 1 << 20,
		"G": 1 << 30, "GB": 1000 * 1000 * 1000, "GIB": 1 << 30,
	}
	mult, ok := units[strings.ToUpper(strings.TrimSpace(s[i:]))]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (B, KiB, MiB, GiB, KB, MB, GB)", s, strings.TrimSpace(s[i:]))
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return ByteSize(n * mult), nil
}
