package printer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// WebhookOptions configures a Webhook. Zero durations are not allowed; use
// WebhookConfig for defaults.
type WebhookOptions struct {
	URL        string
	Headers    map[string]string // static headers, e.g. Authorization
	Timeout    time.Duration     // per request
	Attempts   int               // total tries per batch, >= 1
	Backoff    time.Duration     // delay before the first retry, doubled each time
	MaxBackoff time.Duration     // cap on one delay
}

// Webhook POSTs each batch as a JSON array. Network errors, 5xx and 429 are
// retried with exponential backoff and jitter; other statuses are final.
type Webhook struct {
	opts   WebhookOptions
	target string // URL without query, for error messages (queries may hold tokens)
	client *http.Client
	body   bytes.Buffer
}

// NewWebhook checks opts and builds the HTTP client.
func NewWebhook(opts WebhookOptions) (*Webhook, error) {
	u, err := checkWebhookURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook printer: url: %w", err)
	}
	if opts.Timeout <= 0 || opts.Attempts < 1 || opts.Backoff <= 0 || opts.MaxBackoff < opts.Backoff {
		return nil, fmt.Errorf("webhook printer: timeout, attempts and backoff must be positive and max backoff >= backoff (got %s, %d, %s, %s)",
			opts.Timeout, opts.Attempts, opts.Backoff, opts.MaxBackoff)
	}
	for k, v := range opts.Headers {
		if err := checkHeader(k, v); err != nil {
			return nil, fmt.Errorf("webhook printer: %w", err)
		}
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   opts.Timeout,
		ResponseHeaderTimeout: opts.Timeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	client := &http.Client{
		Transport: tr,
		// A redirect would re-send the batch (and our Authorization header)
		// somewhere the operator did not configure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	target := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	return &Webhook{opts: opts, target: target, client: client}, nil
}

// Name implements Printer.
func (w *Webhook) Name() string { return "webhook" }

// Write implements Printer.
func (w *Webhook) Write(ctx context.Context, batch [][]byte) error {
	w.body.Reset()
	w.body.WriteByte('[')
	for i, ev := range batch {
		if i > 0 {
			w.body.WriteByte(',')
		}
		w.body.Write(ev)
	}
	w.body.WriteByte(']')
	body := w.body.Bytes()

	var last error
	for attempt := 0; attempt < w.opts.Attempts; attempt++ {
		if attempt > 0 {
			if err := sleepCtx(ctx, w.delay(attempt, last)); err != nil {
				return fmt.Errorf("post %d events to %s: %w (after %v)", len(batch), w.target, err, last)
			}
		}
		last = w.post(ctx, body)
		if last == nil {
			return nil
		}
		var pe *permanentError
		if errors.As(last, &pe) || ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("post %d events to %s: %w", len(batch), w.target, last)
}

type statusError struct {
	code       int
	retryAfter time.Duration
}

func (e *statusError) Error() string { return "HTTP status " + strconv.Itoa(e.code) }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() + " (not retried)" }
func (e *permanentError) Unwrap() error { return e.err }

func (w *Webhook) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return &permanentError{err}
	}
	for k, v := range w.opts.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	// Drain a little so the connection can be reused; never read an
	// unbounded body from a server we do not control.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		se := &statusError{code: resp.StatusCode}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			se.retryAfter = time.Duration(secs) * time.Second
		}
		return se
	default:
		return &permanentError{&statusError{code: resp.StatusCode}}
	}
}

// delay is the wait before the given (1-based retry) attempt: exponential,
// capped, with jitter in [d/2, d] so that many daemons do not retry in step.
// A server's Retry-After is honoured up to the cap.
func (w *Webhook) delay(attempt int, last error) time.Duration {
	d := w.opts.Backoff
	for i := 1; i < attempt && d < w.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.opts.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	var se *statusError
	if errors.As(last, &se) && se.retryAfter > d {
		d = min(se.retryAfter, w.opts.MaxBackoff)
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close implements Printer.
func (w *Webhook) Close(context.Context) error {
	w.client.CloseIdleConnections()
	return nil
}

func checkWebhookURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	if u.User != nil {
		return nil, errors.New("must not carry credentials; use headers (e.g. Authorization)")
	}
	return u, nil
}

func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("header name %q has an invalid character", name)
		}
	}
	for i := 0; i < len(value); i++ {
		// The value is a secret more often than not: never echo it.
		if c := value[i]; c == '\r' || c == '\n' || c == 0 {
			return fmt.Errorf("header %s value has a control character", name)
		}
	}
	if http.CanonicalHeaderKey(name) == "Content-Type" {
		return errors.New("header Content-Type is fixed to application/json")
	}
	return nil
}

// isTokenChar reports whether c may appear in an HTTP header name (RFC 9110 token).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
