package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

var errNotResponse = errors.New("dns message is not a response")

// parseDNS fills the DNS fields of e from a (possibly truncated) message.
// Answers that could be parsed before a truncation are kept.
func parseDNS(msg []byte, e *DNSEvent) error {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return fmt.Errorf("dns header: %w", err)
	}
	if !h.Response {
		return errNotResponse
	}
	e.ID = h.ID
	e.RCode = uint16(h.RCode)
	if h.Truncated {
		e.Truncated = true
	}
	q, err := p.Question()
	if err != nil {
		return fmt.Errorf("dns question: %w", err)
	}
	e.Name = normName(q.Name)
	e.QType = uint16(q.Type)
	if err := p.SkipAllQuestions(); err != nil {
		return fmt.Errorf("dns questions: %w", err)
	}
	for {
		ah, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return nil
		}
		if err != nil {
			return partial(e, err)
		}
		switch ah.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return partial(e, err)
			}
			e.addAddr(netip.AddrFrom4(r.A), ah.TTL)
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return partial(e, err)
			}
			e.addAddr(netip.AddrFrom16(r.AAAA).Unmap(), ah.TTL)
		case dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				return partial(e, err)
			}
			e.CNAMEs = append(e.CNAMEs, normName(r.CNAME))
		default:
			if err := p.SkipAnswer(); err != nil {
				return partial(e, err)
			}
		}
	}
}

// partial accepts a parse error in the answers of a truncated capture.
func partial(e *DNSEvent, err error) error {
	if e.Truncated {
		return nil
	}
	return fmt.Errorf("dns answer of %q: %w", e.Name, err)
}

func (e *DNSEvent) addAddr(a netip.Addr, ttl uint32) {
	if len(e.Addrs) == 0 || ttl < e.TTL {
		e.TTL = ttl
	}
	e.Addrs = append(e.Addrs, a)
}

// normName lower-cases ASCII letters only, as DNS compares names: strings.ToLower would turn
// every invalid UTF-8 byte into U+FFFD, merging distinct names and growing them past 255 bytes.
func normName(n dnsmessage.Name) string {
	b := []byte(strings.TrimSuffix(n.String(), "."))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
