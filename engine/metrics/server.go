package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddress is where metrics and health are served without configuration.
const DefaultAddress = "127.0.0.1:9464"

// ServerConfig is the `metrics:` section of the daemon configuration.
type ServerConfig struct {
	Address string `koanf:"address"` // host:port; default DefaultAddress
	// AllowNonLoopback must be set to serve on anything but a loopback
	// address: metrics reveal which recipes fire and what is degraded.
	AllowNonLoopback bool `koanf:"allow_non_loopback"`
}

// Health is what a HealthFunc reports.
type Health struct {
	OK     bool
	Checks map[string]string // component -> "ok" or why not; optional
}

// HealthFunc reports the daemon's health. It must honour ctx.
type HealthFunc func(ctx context.Context) Health

// Server serves /metrics and /healthz.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	m      *Metrics
	health HealthFunc
}

// healthTimeout bounds one health check.
const healthTimeout = 2 * time.Second

// CheckAddress validates cfg's address and returns it with the default
// applied. Only literal loopback IPs and "localhost" pass unless
// AllowNonLoopback is set.
func CheckAddress(cfg ServerConfig) (string, error) {
	addr := cfg.Address
	if addr == "" {
		addr = DefaultAddress
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("metrics.address %q: %w", addr, err)
	}
	if port == "" {
		return "", fmt.Errorf("metrics.address %q: missing port", addr)
	}
	if cfg.AllowNonLoopback {
		return addr, nil
	}
	if host == "localhost" {
		return addr, nil
	}
	if host == "" {
		return "", fmt.Errorf("metrics.address %q: listens on every interface; use a loopback address or set metrics.allow_non_loopback: true", addr)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "", fmt.Errorf("metrics.address %q: host must be a loopback IP or localhost (or set metrics.allow_non_loopback: true)", addr)
	}
	if !ip.IsLoopback() {
		return "", fmt.Errorf("metrics.address %q: %s is not a loopback address; set metrics.allow_non_loopback: true to expose it", addr, host)
	}
	return addr, nil
}

// NewServer checks the address and binds it, so that a port in use is an
// error at start-up and Addr is known before Run. health may be nil (always ok).
func NewServer(cfg ServerConfig, m *Metrics, health HealthFunc) (*Server, error) {
	if m == nil {
		return nil, errors.New("metrics server: nil metrics")
	}
	addr, err := CheckAddress(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics server: listen %s: %w", addr, err)
	}
	if !cfg.AllowNonLoopback {
		// "localhost" goes through the resolver (/etc/hosts may say anything).
		if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			ln.Close()
			return nil, fmt.Errorf("metrics.address %q: bound to non-loopback %s, refusing", addr, ln.Addr())
		}
	}
	if health == nil {
		health = func(context.Context) Health { return Health{OK: true} }
	}
	s := &Server{ln: ln, m: m, health: health}
	mux := http.NewServeMux()
	mux.Handle("/metrics", readOnly(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		Registry:            m.Registry, // counts its own scrape errors
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})))
	mux.Handle("/healthz", readOnly(http.HandlerFunc(s.serveHealth)))
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	return s, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends, then shuts down gracefully (at most 5 s) and
// returns nil; any other serving error is returned.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.srv.Close()
		return fmt.Errorf("metrics server on %s: shutdown: %w", s.ln.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server on %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// Close releases the listener of a server that will not Run.
func (s *Server) Close() error { return s.srv.Close() }

type healthBody struct {
	Status   string            `json:"status"`
	Checks   map[string]string `json:"checks,omitempty"`
	Degraded []string          `json:"degraded"`
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	type result struct {
		h        Health
		panicked bool
	}
	resc := make(chan result, 1)
	go func() {
		defer func() {
			if recover() != nil {
				resc <- result{panicked: true}
			}
		}()
		resc <- result{h: s.health(ctx)}
	}()
	var h Health
	select {
	case res := <-resc:
		h = res.h
		if res.panicked {
			h = Health{Checks: map[string]string{"health": "check panicked"}}
		}
	case <-ctx.Done():
		h = Health{Checks: map[string]string{"health": "check timed out"}}
	}
	body := healthBody{Status: "ok", Checks: h.Checks, Degraded: s.m.DegradedFeatures()}
	if body.Degraded == nil {
		body.Degraded = []string{}
	}
	code := http.StatusOK
	if !h.OK {
		body.Status = "unhealthy"
		code = http.StatusServiceUnavailable
	}
	out, err := json.Marshal(body)
	if err != nil {
		http.Error(w, `{"status":"unhealthy"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(out, '\n'))
}

// readOnly refuses anything but GET and HEAD.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}
