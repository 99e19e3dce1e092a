//go:build !386 && !amd64

package bpf

import (
	"errors"

	"github.com/cilium/ebpf"
)

// The BPF objects are built for x86-64 only (see gen.go).
var errArch = errors.New("jibril's BPF sensors are built for x86-64 only")

func loadBpfProc() (*ebpf.CollectionSpec, error) { return nil, errArch }
func loadBpfFile() (*ebpf.CollectionSpec, error) { return nil, errArch }
func loadBpfNet() (*ebpf.CollectionSpec, error)  { return nil, errArch }
func loadBpfDNS() (*ebpf.CollectionSpec, error)  { return nil, errArch }
