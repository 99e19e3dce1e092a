package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/jibril-rt/jibril/sandbox/livenet"
	"github.com/jibril-rt/jibril/sandbox/liveworld"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/store"
)

// The state commands inspect and repair the live database (liveworld.DBPath) and the
// nftables blocks. Exit codes: 0 done, 1 nothing found / chain broken / a failure, 2 bad input.
// Changes made here are written to the audit chain like a reaction's.

// openState opens the live database. Read-only commands refuse to create one: a missing file
// almost always means a wrong --state-dir.
func openState(ctx context.Context, g *globals, create bool) (*store.Store, error) {
	path := liveworld.DBPath(g.stateDir)
	if !create {
		if _, err := os.Stat(path); err != nil {
			return nil, badInput("--state-dir %s: no database at %s: %v", g.stateDir, path, unwrapPath(err))
		}
	}
	st, err := store.Open(ctx, path)
	if err != nil {
		return nil, badInput("--state-dir %s: %v", g.stateDir, err)
	}
	return st, nil
}

// storeErr maps a store error to an exit code: invalid arguments are bad input.
func storeErr(err error) error {
	if errors.Is(err, store.ErrInvalid) {
		return badInput("%v", err)
	}
	return &exitError{code: 1, msg: err.Error()}
}

// auditCLI records an operator's change in the audit chain; a failure to do so fails the command.
func auditCLI(ctx context.Context, st *store.Store, helper string, args []string, result any) error {
	a, _ := json.Marshal(args)
	r, _ := json.Marshal(result)
	_, err := st.AppendAudit(ctx, store.AuditEntry{Recipe: "", Helper: helper, Args: string(a),
		Result: string(r), Outcome: "done", Mode: "cli"})
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("done, but not audited: %v", err)}
	}
	return nil
}

// printable quotes a string that would garble a terminal line (reactions store anything).
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '\t' {
			return strconv.Quote(s)
		}
	}
	return s
}

func newStoreCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "store", Short: "Inspect and repair the reactions' key-value data"}
	get := &cobra.Command{
		Use: "get NS KEY", Short: "Print a value", Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			st, err := openState(cmd.Context(), g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			v, ok, err := st.Get(cmd.Context(), a[0], a[1])
			if err != nil {
				return storeErr(err)
			}
			if !ok {
				return &exitError{code: 1, msg: fmt.Sprintf("store get: %s: no key %s", printable(a[0]), printable(a[1]))}
			}
			fmt.Fprintln(cmd.OutOrStdout(), v)
			return nil
		},
	}
	set := &cobra.Command{
		Use: "set NS KEY VALUE", Short: "Set a value", Args: exactArgs(3),
		RunE: func(cmd *cobra.Command, a []string) error {
			st, err := openState(cmd.Context(), g, true)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Set(cmd.Context(), a[0], a[1], a[2]); err != nil {
				return storeErr(err)
			}
			return auditCLI(cmd.Context(), st, "cli:store.set", a, 0)
		},
	}
	var listJSON bool
	list := &cobra.Command{
		Use: "list [NS]", Short: "List the namespaces, or the keys and values of one", Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			st, err := openState(ctx, g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			out := cmd.OutOrStdout()
			if len(a) == 0 {
				nss, err := st.Namespaces(ctx)
				if err != nil {
					return storeErr(err)
				}
				if listJSON {
					return writeJSON(out, nss)
				}
				for _, ns := range nss {
					fmt.Fprintln(out, printable(ns))
				}
				return nil
			}
			keys, err := st.Keys(ctx, a[0])
			if err != nil {
				return storeErr(err)
			}
			vals, err := st.Values(ctx, a[0])
			if err != nil {
				return storeErr(err)
			}
			if len(keys) != len(vals) {
				return &exitError{code: 1, msg: "store list: the namespace changed while it was read; try again"}
			}
			if listJSON {
				type kv struct {
					Key   string `json:"key"`
					Value string `json:"value"`
				}
				items := make([]kv, len(keys))
				for i := range keys {
					items[i] = kv{keys[i], vals[i]}
				}
				return writeJSON(out, items)
			}
			for i := range keys {
				fmt.Fprintf(out, "%s\t%s\n", printable(keys[i]), printable(vals[i]))
			}
			return nil
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")
	del := &cobra.Command{
		Use: "delete NS KEY", Short: "Delete a key", Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			st, err := openState(cmd.Context(), g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			ok, err := st.Delete(cmd.Context(), a[0], a[1])
			if err != nil {
				return storeErr(err)
			}
			if !ok {
				return &exitError{code: 1, msg: fmt.Sprintf("store delete: %s: no key %s", printable(a[0]), printable(a[1]))}
			}
			return auditCLI(cmd.Context(), st, "cli:store.delete", a, 0)
		},
	}
	c.AddCommand(get, set, list, del)
	return c
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) != n {
			return badInput("%s: want %d argument(s) (%s), got %d", cmd.CommandPath(), n, cmd.Use, len(a))
		}
		return nil
	}
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) < lo || len(a) > hi {
			return badInput("%s: want %d to %d argument(s) (%s), got %d", cmd.CommandPath(), lo, hi, cmd.Use, len(a))
		}
		return nil
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// auditJSON is the stable JSON form of an audit row.
type auditJSON struct {
	Seq       int64           `json:"seq"`
	Time      string          `json:"time"`
	Recipe    string          `json:"recipe"`
	Reaction  int             `json:"reaction"`
	EventUUID string          `json:"event_uuid"`
	Helper    string          `json:"helper"`
	Args      json.RawMessage `json:"args"`
	Result    json.RawMessage `json:"result"`
	Errno     string          `json:"errno"`
	Outcome   string          `json:"outcome"`
	Mode      string          `json:"mode"`
	Prev      string          `json:"prev"`
	Hash      string          `json:"hash"`
}

func rawOr(s, def string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s) // a row edited into invalid JSON still prints
	if len(b) == 0 {
		return json.RawMessage(def)
	}
	return b
}

func newAuditCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "Read and verify the tamper-evident audit trail"}
	var recipe string
	var limit int
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "Print audit rows, oldest first (--limit N: the newest N)", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return badInput("--limit: %d is negative", limit)
			}
			ctx := cmd.Context()
			st, err := openState(ctx, g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			rows, err := st.ListAudit(ctx, store.AuditFilter{Recipe: recipe})
			if err != nil {
				return storeErr(err)
			}
			if limit > 0 && len(rows) > limit {
				rows = rows[len(rows)-limit:]
			}
			out := cmd.OutOrStdout()
			if asJSON {
				items := make([]auditJSON, len(rows))
				for i, e := range rows {
					items[i] = auditJSON{Seq: e.Seq, Time: e.Time.Format(time.RFC3339Nano), Recipe: e.Recipe,
						Reaction: e.Reaction, EventUUID: e.EventUUID, Helper: e.Helper, Args: rawOr(e.Args, "[]"),
						Result: rawOr(e.Result, "null"), Errno: e.Errno, Outcome: e.Outcome, Mode: e.Mode,
						Prev: e.Prev, Hash: e.Hash}
				}
				return writeJSON(out, items)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tRECIPE\tHELPER\tARGS\tRESULT\tOUTCOME\tMODE\tERRNO")
			for _, e := range rows {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339),
					printable(orDash(e.Recipe)), printable(e.Helper), printable(e.Args), printable(e.Result),
					e.Outcome, printable(e.Mode), printable(orDash(e.Errno)))
			}
			return tw.Flush()
		},
	}
	fl := list.Flags()
	fl.StringVar(&recipe, "recipe", "", "only this recipe's rows")
	fl.IntVar(&limit, "limit", 0, "only the newest N rows (0: all)")
	fl.BoolVar(&asJSON, "json", false, "print a JSON array")
	verify := &cobra.Command{
		Use: "verify", Short: "Check the hash chain: exit 0 when intact, 1 naming the first bad row", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openState(cmd.Context(), g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			rep, err := st.VerifyAudit(cmd.Context())
			if err != nil {
				return storeErr(err)
			}
			if !rep.OK {
				return &exitError{code: 1, msg: fmt.Sprintf("audit chain broken at row %d: %s (%d rows read)", rep.FirstBad, rep.Reason, rep.Rows)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit chain intact: %d rows\n", rep.Rows)
			return nil
		},
	}
	c.AddCommand(list, verify)
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// blockJSON is one persisted block in `net list --json`.
type blockJSON struct {
	Kind      string       `json:"kind"`
	Value     string       `json:"value"`
	Recipe    string       `json:"recipe"`
	Created   string       `json:"created"`
	Expires   string       `json:"expires,omitempty"` // absent: never
	InKernel  *bool        `json:"in_nftables,omitempty"`
	KernelTTL *int64       `json:"nftables_ttl_ms,omitempty"` // 0: permanent
	Addresses []netip.Addr `json:"addresses,omitempty"`       // domains: the addresses blocked for it
}

type elemJSON struct {
	Prefix string `json:"prefix"`
	TTLms  int64  `json:"ttl_ms"` // 0: permanent
}

type netListJSON struct {
	Blocks        []blockJSON `json:"blocks"`
	NFTables      []elemJSON  `json:"nftables"`
	NFTablesError string      `json:"nftables_error,omitempty"`
}

// openNet opens the live network actuator in this process's network namespace (the CLI's tests
// run it under `ip netns exec`).
func openNet(ctx context.Context, st *store.Store) (*livenet.Net, error) {
	return livenet.Open(ctx, st, livenet.Options{Netblock: netblock.Options{NetNSFd: -1}})
}

func newNetCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "net", Short: "Inspect and remove network blocks"}
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "Persisted blocks with their expiry, and what nftables holds", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := openState(ctx, g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			l, err := livenet.ListStore(ctx, st)
			if err != nil {
				return storeErr(err)
			}
			if nw, err := openNet(ctx, st); err != nil {
				l.KernelErr = err
			} else {
				l.Kernel, l.KernelErr = nw.Blocker().List(ctx)
				nw.Close()
			}
			if err := printNetList(cmd.OutOrStdout(), l, asJSON); err != nil {
				return err
			}
			if l.KernelErr != nil {
				return &exitError{code: 1, msg: fmt.Sprintf("nftables: %v", l.KernelErr)}
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	unblock := &cobra.Command{
		Use: "unblock IP|CIDR|DOMAIN", Short: "Remove a block from nftables and from the store", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			target := strings.TrimSpace(a[0])
			prefix, domain, err := unblockTarget(target)
			if err != nil {
				return err
			}
			st, err := openState(ctx, g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			nw, err := openNet(ctx, st)
			if err != nil {
				return &exitError{code: 1, msg: fmt.Sprintf("net unblock: %v", err)}
			}
			defer nw.Close()
			var ret int
			if domain != "" {
				ret, err = nw.UnblockDomain(ctx, domain)
				target = domain
			} else {
				ret, err = nw.UnblockPrefix(ctx, prefix)
				target = prefix.String()
			}
			if err != nil {
				return &exitError{code: 1, msg: fmt.Sprintf("net unblock %s: %v", target, err)}
			}
			if ret == 1 {
				return &exitError{code: 1, msg: fmt.Sprintf("net unblock: %s was not blocked", target)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unblocked %s\n", target)
			return auditCLI(ctx, st, "cli:net.unblock", []string{target}, 0)
		},
	}
	c.AddCommand(list, unblock)
	return c
}

// unblockTarget tells an address or CIDR from a domain. Something that looks numeric or has a
// ':' or '/' but does not parse is a bad address, never a domain.
func unblockTarget(s string) (netip.Prefix, string, error) {
	if p, err := parseTarget(s); err == nil {
		return p, "", nil
	} else if strings.ContainsAny(s, ":/") || strings.Trim(s, "0123456789.") == "" {
		return netip.Prefix{}, "", badInput("net unblock: %q is not an IP address or a CIDR: %v", s, err)
	}
	d, err := netblock.NormalizeDomain(s)
	if err != nil {
		return netip.Prefix{}, "", badInput("net unblock: %q is not an IP address, a CIDR or a domain: %v", s, err)
	}
	return netip.Prefix{}, d, nil
}

// parseTarget reads an address (a full-length prefix) or a CIDR.
func parseTarget(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zoned address %s", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func printNetList(w io.Writer, l livenet.Listing, asJSON bool) error {
	kernel := map[netip.Prefix]time.Duration{}
	for _, e := range l.Kernel {
		kernel[e.Prefix] = e.TTL
	}
	now := time.Now()
	if asJSON {
		doc := netListJSON{Blocks: []blockJSON{}, NFTables: []elemJSON{}}
		for _, b := range l.Blocks {
			j := blockJSON{Kind: b.Kind, Value: b.Value, Recipe: b.Recipe, Created: b.Created.Format(time.RFC3339Nano)}
			if !b.Expires.IsZero() {
				j.Expires = b.Expires.Format(time.RFC3339Nano)
			}
			if b.Kind == store.BlockDomain {
				j.Addresses = l.DomainAddrs[b.Value]
			} else if p, err := parseTarget(b.Value); err == nil && l.KernelErr == nil {
				ttl, in := kernel[p]
				j.InKernel = &in
				if in {
					ms := ttl.Milliseconds()
					j.KernelTTL = &ms
				}
			}
			doc.Blocks = append(doc.Blocks, j)
		}
		for _, e := range l.Kernel {
			doc.NFTables = append(doc.NFTables, elemJSON{Prefix: e.Prefix.String(), TTLms: e.TTL.Milliseconds()})
		}
		if l.KernelErr != nil {
			doc.NFTablesError = l.KernelErr.Error()
		}
		return writeJSON(w, doc)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tVALUE\tRECIPE\tEXPIRES\tNFTABLES")
	for _, b := range l.Blocks {
		exp := "never"
		if !b.Expires.IsZero() {
			exp = fmt.Sprintf("%s (in %s)", b.Expires.Local().Format(time.RFC3339), b.Expires.Sub(now).Round(time.Second))
		}
		state := "?"
		switch {
		case b.Kind == store.BlockDomain:
			addrs := l.DomainAddrs[b.Value]
			strs := make([]string, len(addrs))
			for i, a := range addrs {
				strs[i] = a.String()
			}
			state = fmt.Sprintf("%d address(es) %s", len(addrs), strings.Join(strs, " "))
		case l.KernelErr != nil:
		default:
			if p, err := parseTarget(b.Value); err == nil {
				if ttl, ok := kernel[p]; !ok {
					state = "MISSING"
				} else if ttl == 0 {
					state = "yes"
				} else {
					state = "yes, " + ttl.Round(time.Second).String() + " left"
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Kind, b.Value, printable(orDash(b.Recipe)), exp, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if l.KernelErr != nil {
		return nil
	}
	fmt.Fprintf(w, "nftables (table inet %s): %d element(s)\n", netblock.TableName, len(l.Kernel))
	for _, e := range l.Kernel {
		ttl := "permanent"
		if e.TTL > 0 {
			ttl = e.TTL.Round(time.Second).String() + " left"
		}
		fmt.Fprintf(w, "  %s\t%s\n", e.Prefix, ttl)
	}
	return nil
}
