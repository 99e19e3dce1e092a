package main

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/jibril-rt/jibril/sandbox/netblock"
	"golang.org/x/sys/unix"
)

const (
	nftBlockSamples = 3000   // single Block calls measured (>= 2000)
	nftBlockWarmup  = 100    // calls before measuring (socket dial, page faults)
	nftManyElements = 100000 // elements of the BlockMany run
	nftBenchTTL     = 10 * time.Minute
)

// benchNFT measures in a throwaway namespace it creates and removes:
// nft_block_us_p50 and nft_block_us_p99 (one Block with a ttl, kernel
// transaction included, over nftBlockSamples distinct addresses) and
// nft_blocks_per_s (BlockMany of nftManyElements addresses with a ttl, into
// a fresh table, total elements / elapsed seconds; every element is then
// counted back so a batch silently losing elements cannot inflate it).
// Addresses come from 198.18.0.0/15 (RFC 2544). Needs root.
func benchNFT(ctx context.Context) (map[string]float64, error) {
	nsfd, err := throwawayNetNS()
	if err != nil {
		return nil, err
	}
	// The namespace lives as long as a descriptor or a socket holds it:
	// Open duplicates the descriptor, Close releases everything.
	b, err := netblock.Open(ctx, netblock.Options{NetNSFd: nsfd})
	_ = unix.Close(nsfd)
	if err != nil {
		return nil, fmt.Errorf("bench nft: %w", err)
	}
	defer b.Close()

	// addr returns the i-th address of 198.18.0.0/15.
	addr := func(i int) netip.Prefix {
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
		return netip.PrefixFrom(a, 32)
	}
	lat := make([]time.Duration, 0, nftBlockSamples)
	for i := range nftBlockWarmup + nftBlockSamples {
		start := time.Now()
		ret, err := b.Block(ctx, addr(i), nftBenchTTL)
		d := time.Since(start)
		if err != nil || ret != 0 {
			return nil, fmt.Errorf("bench nft: Block %d: %d, %v", i, ret, err)
		}
		if i >= nftBlockWarmup {
			lat = append(lat, d)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p*float64(len(lat))+0.5) - 1
		return float64(lat[max(i, 0)].Nanoseconds()) / 1e3
	}

	// A fresh table, so that no element is already there.
	if err := b.Destroy(ctx); err != nil {
		return nil, fmt.Errorf("bench nft: %w", err)
	}
	if err := b.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("bench nft: %w", err)
	}
	els := make([]netblock.Element, nftManyElements)
	for i := range els {
		els[i] = netblock.Element{Prefix: addr(i), TTL: nftBenchTTL}
	}
	start := time.Now()
	if err := b.BlockMany(ctx, els); err != nil {
		return nil, fmt.Errorf("bench nft: %w", err)
	}
	elapsed := time.Since(start)
	list, err := b.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench nft: %w", err)
	}
	if len(list) != nftManyElements {
		return nil, fmt.Errorf("bench nft: BlockMany of %d elements left %d in the set", nftManyElements, len(list))
	}
	if err := b.Destroy(ctx); err != nil {
		return nil, fmt.Errorf("bench nft: %w", err)
	}
	return map[string]float64{
		"nft_block_us_p50": pct(0.50),
		"nft_block_us_p99": pct(0.99),
		"nft_blocks_per_s": float64(nftManyElements) / elapsed.Seconds(),
	}, nil
}

// throwawayNetNS creates an unnamed network namespace and returns a
// descriptor of it; closing every reference to it removes it. The thread
// that switched into it is never unlocked, so it dies instead of running
// other goroutines in the wrong namespace.
func throwawayNetNS() (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, fmt.Errorf("bench nft: create network namespace (needs root): %w", err)}
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{-1, fmt.Errorf("bench nft: open network namespace: %w", err)}
			return
		}
		ch <- result{fd, nil}
	}()
	r := <-ch
	return r.fd, r.err
}
