package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Block kinds.
const (
	BlockIP     = "ip"
	BlockCIDR   = "cidr"
	BlockDomain = "domain"
)

// Block is a network block a recipe asked for.
type Block struct {
	Kind    string // "ip" | "cidr" | "domain"
	Value   string // canonical text: netip.Addr/Prefix String(), domain lower-case without trailing dot
	Recipe  string
	Created time.Time
	Expires time.Time // zero = never
}

// CanonicalBlock validates value for kind and returns its canonical text:
// netip String() for addresses, the masked prefix for CIDRs, and the
// lower-case domain without its trailing dot. Zoned addresses are refused.
func CanonicalBlock(kind, value string) (string, error) {
	switch kind {
	case BlockIP:
		a, err := netip.ParseAddr(value)
		if err != nil || a.Zone() != "" {
			return "", fmt.Errorf("%w: block value %q is not an IP address", ErrInvalid, value)
		}
		return a.String(), nil
	case BlockCIDR:
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return "", fmt.Errorf("%w: block value %q is not a CIDR prefix", ErrInvalid, value)
		}
		return p.Masked().String(), nil
	case BlockDomain:
		return canonicalDomain(value)
	}
	return "", fmt.Errorf("%w: block kind %q (want ip, cidr or domain)", ErrInvalid, kind)
}

// canonicalDomain accepts RFC 1123 host names (underscore tolerated, as
// seen in real DNS) of at most 253 bytes with labels of 1..63 bytes.
func canonicalDomain(value string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(value), ".")
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: block domain %q: %s", ErrInvalid, value, why)
	}
	if d == "" || len(d) > 253 {
		return bad("length must be 1..253")
	}
	for _, label := range strings.Split(d, ".") {
		if len(label) == 0 || len(label) > 63 {
			return bad("label length must be 1..63")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("label starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return bad(fmt.Sprintf("byte %q not allowed", c))
			}
		}
	}
	return d, nil
}

// PutBlock inserts or replaces the block with the same (Kind, Value). The
// value is canonicalized first; a zero Created becomes now.
func (s *Store) PutBlock(ctx context.Context, b Block) error {
	v, err := CanonicalBlock(b.Kind, b.Value)
	if err != nil {
		return fmt.Errorf("store: put block: %w", err)
	}
	if b.Created.IsZero() {
		b.Created = time.Now()
	}
	created, err := toNanos("created", b.Created)
	if err != nil {
		return fmt.Errorf("store: put block: %w", err)
	}
	expires, err := toNanos("expires", b.Expires)
	if err != nil {
		return fmt.Errorf("store: put block: %w", err)
	}
	if err := checkLen("recipe", b.Recipe, MaxNameLen); err != nil {
		return fmt.Errorf("store: put block: %w", err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO blocks (kind, value, recipe, created_ns, expires_ns)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (kind, value) DO UPDATE SET recipe = excluded.recipe,
			created_ns = excluded.created_ns, expires_ns = excluded.expires_ns`,
		b.Kind, v, b.Recipe, created, expires)
	if err != nil {
		return fmt.Errorf("store: put block %s %s: %w", b.Kind, v, err)
	}
	return nil
}

// DeleteBlock removes a block and reports whether it existed.
func (s *Store) DeleteBlock(ctx context.Context, kind, value string) (bool, error) {
	v, err := CanonicalBlock(kind, value)
	if err != nil {
		return false, fmt.Errorf("store: delete block: %w", err)
	}
	n, err := execCount(ctx, s.w, `DELETE FROM blocks WHERE kind = ? AND value = ?`, kind, v)
	if err != nil {
		return false, fmt.Errorf("store: delete block %s %s: %w", kind, v, err)
	}
	return n > 0, nil
}

// ActiveBlocks returns the blocks not expired at now, ordered by kind, value.
func (s *Store) ActiveBlocks(ctx context.Context, now time.Time) ([]Block, error) {
	n, err := toNanos("now", now)
	if err != nil {
		return nil, fmt.Errorf("store: active blocks: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT kind, value, recipe, created_ns, expires_ns
		FROM blocks WHERE expires_ns = 0 OR expires_ns > ? ORDER BY kind, value`, n)
	if err != nil {
		return nil, fmt.Errorf("store: active blocks: %w", err)
	}
	defer rows.Close()
	out, err := scanBlocks(rows)
	if err != nil {
		return nil, fmt.Errorf("store: active blocks: %w", err)
	}
	return out, nil
}

func scanBlocks(rows *sql.Rows) ([]Block, error) {
	out := []Block{}
	for rows.Next() {
		var b Block
		var created, expires int64
		if err := rows.Scan(&b.Kind, &b.Value, &b.Recipe, &created, &expires); err != nil {
			return nil, err
		}
		b.Created, b.Expires = fromNanos(created), fromNanos(expires)
		out = append(out, b)
	}
	return out, rows.Err()
}

// PurgeExpiredBlocks deletes blocks whose expiry is at or before now and
// returns how many were deleted.
func (s *Store) PurgeExpiredBlocks(ctx context.Context, now time.Time) (int, error) {
	n, err := toNanos("now", now)
	if err != nil {
		return 0, fmt.Errorf("store: purge blocks: %w", err)
	}
	c, err := execCount(ctx, s.w, `DELETE FROM blocks WHERE expires_ns != 0 AND expires_ns <= ?`, n)
	if err != nil {
		return 0, fmt.Errorf("store: purge blocks: %w", err)
	}
	return int(c), nil
}
