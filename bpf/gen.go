package bpf

// The BPF objects are compiled for x86-64 only (system call arguments are
// read from x86 pt_regs and headers/vmlinux.h is the x86-64 kernel's). The
// generated *_x86_bpfel.go/.o files are committed so that building jibril
// needs no clang; see README.md to regenerate them.

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-stem proc -no-global-types bpfProc c/proc.bpf.c -- -I./headers -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-stem file -no-global-types bpfFile c/file.bpf.c -- -I./headers -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-stem net -no-global-types bpfNet c/net.bpf.c -- -I./headers -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -output-stem dns -no-global-types bpfDNS c/dns.bpf.c -- -I./headers -O2 -g -Wall -Werror
