//go:build ignore

// DNS stream: UDP datagrams from port 53 delivered to any local socket,
// seen by a cgroup_skb/ingress program on the root cgroup v2. It copies the
// first DNS_CAP bytes of the payload; user space parses them. The program
// never drops anything (returns 1).

#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#define DNS_CAP 512
#define DNS_F_TRUNC 0x1 // the payload is longer than DNS_CAP

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define AF_INET 2
#define AF_INET6 10

struct dns_event {
	struct ev_hdr h;
	u64 cgroup_id;
	u32 ifindex;
	u16 family;
	u16 sport;
	u16 dport;
	u16 len; // payload length
	u16 caplen;
	u16 pad;
	u8 saddr[16];
	u8 daddr[16];
	u8 payload[DNS_CAP];
};
_Static_assert(sizeof(struct dns_event) == 584, "dns_event layout");

// Keep the record type in BTF: user space checks its decoder against it.
const struct dns_event *btf_dns_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} dns_rb SEC(".maps");

DECLARE_CFG();
DECLARE_LOST();

SEC("cgroup_skb/ingress")
int dns_ingress(struct __sk_buff *skb)
{
	u8 saddr[16] = {}, daddr[16] = {};
	u32 l4;
	u16 family;
	u8 proto;

	// skb->data starts at the network header here.
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		u8 vihl;
		u16 frag;
		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) < 0)
			return 1;
		if (bpf_skb_load_bytes(skb, 9, &proto, 1) < 0 || proto != IPPROTO_UDP)
			return 1;
		if (bpf_skb_load_bytes(skb, 6, &frag, 2) < 0 ||
		    (bpf_ntohs(frag) & 0x1fff) != 0)
			return 1; // not the first fragment
		if (bpf_skb_load_bytes(skb, 12, saddr, 4) < 0 ||
		    bpf_skb_load_bytes(skb, 16, daddr, 4) < 0)
			return 1;
		l4 = (vihl & 0xf) * 4;
		family = AF_INET;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &proto, 1) < 0 || proto != IPPROTO_UDP)
			return 1;
		if (bpf_skb_load_bytes(skb, 8, saddr, 16) < 0 ||
		    bpf_skb_load_bytes(skb, 24, daddr, 16) < 0)
			return 1;
		l4 = 40;
		family = AF_INET6;
	} else {
		return 1;
	}
	if (l4 < 20 || l4 > 60)
		return 1;

	u16 ports[2];
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) < 0)
		return 1;
	if (ports[0] != bpf_htons(53))
		return 1;

	u32 off = l4 + 8;
	if (skb->len <= off)
		return 1;
	u32 plen = skb->len - off;
	u32 cap = plen;
	u32 flags = 0;
	if (cap > DNS_CAP) {
		cap = DNS_CAP;
		flags |= DNS_F_TRUNC;
	}

	struct dns_event *e = bpf_ringbuf_reserve(&dns_rb, sizeof(*e), 0);
	if (!e) {
		COUNT_LOST(STREAM_DNS);
		return 1;
	}
	u64 n = cap;
	barrier_var(n); // keep the checks below: they are what the verifier reads
	n &= 1023;
	if (n == 0 || n > DNS_CAP ||
	    bpf_skb_load_bytes(skb, off, e->payload, n) < 0) {
		bpf_ringbuf_discard(e, 0);
		return 1;
	}
	e->h.kind = EV_DNS;
	e->h.flags = flags;
	e->h.ktime = bpf_ktime_get_ns();
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->ifindex = skb->ifindex;
	e->family = family;
	e->sport = 53;
	e->dport = bpf_ntohs(ports[1]);
	e->len = plen > 0xffff ? 0xffff : plen;
	e->caplen = cap;
	e->pad = 0;
	__builtin_memcpy(e->saddr, saddr, 16);
	__builtin_memcpy(e->daddr, daddr, 16);
	// Names must be known before the connection that follows the answer.
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 1;
}
