// Command fakeminer stands in for a crypto-currency miner in the attack tests: it takes xmrig's
// pool options (-o, -u, -p, --config), resolves the pool name through a given DNS server, logs
// in with the stratum JSON-RPC protocol and then idles on the connection, reconnecting when it
// drops, like a miner would. It never computes anything and gives up after --max.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

type config struct {
	URL   string `json:"url"`   // host:port, optionally stratum+tcp://host:port
	User  string `json:"user"`  // wallet or worker name
	Pass  string `json:"pass"`  // usually "x"
	DNS   string `json:"dns"`   // DNS server host:port for the pool name
	Proto string `json:"proto"` // "xmr" (login) or "stratum" (mining.subscribe + mining.authorize)
	// Pause between resolving the pool's name and connecting to it, in Go duration syntax.
	Pause string `json:"pause"`
}

func main() {
	var c config
	var file string
	var max time.Duration
	flag.StringVar(&c.URL, "o", "", "pool URL")
	flag.StringVar(&c.User, "u", "wallet", "user")
	flag.StringVar(&c.Pass, "p", "x", "password")
	flag.StringVar(&c.DNS, "dns", "", "DNS server for the pool name (host:port)")
	flag.StringVar(&c.Proto, "proto", "xmr", "xmr or stratum")
	flag.StringVar(&c.Pause, "pause", "0s", "pause between resolving the pool and connecting")
	flag.StringVar(&file, "config", "", "JSON configuration (url, user, pass, dns, proto)")
	flag.DurationVar(&max, "max", 60*time.Second, "give up after this long")
	flag.Parse()
	if file != "" {
		b, err := os.ReadFile(file)
		if err == nil {
			err = json.Unmarshal(b, &c)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "fakeminer: config %s: %v\n", file, err)
			os.Exit(2)
		}
	}
	if c.URL == "" {
		fmt.Fprintln(os.Stderr, "fakeminer: no pool (-o or --config)")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), max)
	defer cancel()
	for ctx.Err() == nil {
		if err := session(ctx, c); err != nil {
			fmt.Fprintf(os.Stderr, "fakeminer: %v\n", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	os.Exit(3)
}

// session connects once, logs in and reads the pool's messages until the connection ends.
func session(ctx context.Context, c config) error {
	addr := strings.TrimPrefix(strings.TrimPrefix(c.URL, "stratum+tcp://"), "stratum+ssl://")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("pool %s: %w", c.URL, err)
	}
	r := net.DefaultResolver
	if c.DNS != "" {
		r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "udp", c.DNS)
		}}
	}
	ips, err := r.LookupHost(ctx, host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	if pause, err := time.ParseDuration(c.Pause); err == nil && pause > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ips[0], port))
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	enc := json.NewEncoder(conn)
	var msgs []any
	if c.Proto == "stratum" {
		msgs = []any{
			map[string]any{"id": 1, "method": "mining.subscribe", "params": []any{"fakeminer/1.0"}},
			map[string]any{"id": 2, "method": "mining.authorize", "params": []any{c.User, c.Pass}},
		}
	} else {
		msgs = []any{map[string]any{"id": 1, "jsonrpc": "2.0", "method": "login",
			"params": map[string]any{"login": c.User, "pass": c.Pass, "agent": "fakeminer/1.0"}}}
	}
	for _, m := range msgs {
		if err := enc.Encode(m); err != nil {
			return fmt.Errorf("send to %s: %w", addr, err)
		}
	}
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		fmt.Printf("pool: %s\n", sc.Text())
	}
	return sc.Err()
}
