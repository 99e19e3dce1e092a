package main

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// noNetwork answers network helpers in --live sandbox runs until the nftables actuator is wired
// into the CLI: the failure is reported to the reaction (-1 and Errno), never hidden.
type noNetwork struct{}

var errNoNet = errors.New("network blocking is not available in sandbox exec --live yet")

func (noNetwork) BlockPrefix(context.Context, netip.Prefix, time.Duration, string) (int, error) {
	return -1, errNoNet
}
func (noNetwork) UnblockPrefix(context.Context, netip.Prefix) (int, error) { return -1, errNoNet }
func (noNetwork) BlockDomain(context.Context, string, string) (int, error) { return -1, errNoNet }
func (noNetwork) UnblockDomain(context.Context, string) (int, error)       { return -1, errNoNet }
