package event

import "time"

// Sample returns a realistic, fully filled event of a kind ("execution", "file_access" or
// "network_peer"), nil for another kind. Each call returns a fresh copy that the caller may
// mutate. Values are fixed, so tests and benchmarks are deterministic; network addresses are
// in 198.18.0.0/15 (RFC 2544), safe to block in a test namespace.
//
//   - execution: an xmrig-like miner /tmp/.cache/xmrig started by sh, under bash, under sshd
//     (three ancestors, the miner last in background.ancestry).
//   - file_access: python3 reading /etc/shadow, same ancestry shape.
//   - network_peer: the miner connecting to pool.supportxmr.com:443 over TCP.
func Sample(kind string) *Event {
	switch kind {
	case TypeExecution:
		return sampleExecution()
	case TypeFileAccess:
		return sampleFileAccess()
	case TypeNetworkPeer:
		return sampleNetworkPeer()
	}
	return nil
}

func sampleTime(offset time.Duration) string {
	return Stamp(time.Date(2026, 1, 1, 12, 0, 0, 123456789, time.UTC).Add(offset))
}

func sampleScenario() []Scenario {
	return []Scenario{{Hostname: "web-1", IP: "198.18.0.2", MAC: "02:42:c6:12:00:02",
		OS: "debian 12", Arch: "x86_64"}}
}

// sampleAncestry is sshd -> bash -> sh, then the process itself.
func sampleAncestry(self Ancestor) []Ancestor {
	return []Ancestor{
		{PID: 812, PPID: 1, UID: 0, Comm: "sshd", Cmd: "sshd: /usr/sbin/sshd -D", Exe: "/usr/sbin/sshd",
			Args: "-D", Start: sampleTime(-72 * time.Hour)},
		{PID: 4100, PPID: 812, UID: 1000, Comm: "bash", Cmd: "-bash", Exe: "/usr/bin/bash",
			Args: "", Start: sampleTime(-10 * time.Minute)},
		{PID: 4241, PPID: 4100, UID: 1000, Comm: "sh", Cmd: "sh -c /tmp/.cache/xmrig",
			Exe: "/usr/bin/dash", Args: "-c /tmp/.cache/xmrig", Start: sampleTime(-2 * time.Second)},
		self,
	}
}

func minerProcess() Process {
	p := Process{
		Start: sampleTime(-time.Millisecond), UID: 1000, GID: 1000, PID: 4242, PPID: 4241,
		Comm: "xmrig", Exe: "/tmp/.cache/xmrig", Envs: "HOME=/home/deploy PATH=/usr/bin:/bin",
		Loader: "/lib64/ld-linux-x86-64.so.2", PrevExe: "/usr/bin/dash",
		PrevArgs: "-c /tmp/.cache/xmrig", Cgroup: "/user.slice/user-1000.slice/session-3.scope",
	}
	p.SetArgv([]string{"/tmp/.cache/xmrig", "-o", "pool.supportxmr.com:443", "-u",
		"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7ot", "--donate-level", "1"})
	return p
}

func ancestorOf(p Process) Ancestor {
	return Ancestor{PID: p.PID, PPID: p.PPID, UID: p.UID, Comm: p.Comm, Cmd: p.Cmd, Exe: p.Exe,
		Args: p.Args, Start: p.Start}
}

func sampleMetadata(kind, format, desc, importance, tactic, technique, sub string) Metadata {
	return Metadata{Kind: kind, Name: kind, Format: format, Version: "1.0", Description: desc,
		Documentation: "https://garnet.gitbook.io/jibril/detections/" + kind,
		Importance:    importance, Tactic: tactic, Technique: technique, Subtechnique: sub}
}

func sampleExecution() *Event {
	p := minerProcess()
	f := &File{}
	f.SetPath(p.Exe)
	f.SetActions("execve")
	return &Event{
		UUID:      "0b9e6a8e-6f1c-4c43-9d0a-3e2f5b7c9a01",
		Timestamp: sampleTime(0),
		EventType: TypeExecution,
		Note:      "crypto miner started from /tmp",
		Metadata: sampleMetadata("crypto_miner_execution", "execution", "Crypto miner execution",
			"critical", "impact", "resource_hijacking", "compute_hijacking"),
		Process: p,
		File:    f,
		Background: Background{
			Ancestry: sampleAncestry(ancestorOf(p)),
			Files: Files{Root: FSDir{AbsPath: "/", BaseName: "/", Dirs: []FSDir{
				{AbsPath: "/tmp", BaseName: "tmp", Dirs: []FSDir{
					{AbsPath: "/tmp/.cache", BaseName: ".cache", Files: []FSFile{
						{AbsPath: "/tmp/.cache/xmrig", BaseName: "xmrig", Actions: []string{"execve"}},
					}},
				}},
			}}},
		},
		Scenario: sampleScenario(),
	}
}

func sampleFileAccess() *Event {
	p := Process{
		Start: sampleTime(-time.Second), UID: 1000, GID: 1000, PID: 4300, PPID: 4241,
		Comm: "python3", Exe: "/usr/bin/python3.11", Envs: "HOME=/home/deploy",
		Loader: "/lib64/ld-linux-x86-64.so.2", Cgroup: "/user.slice/user-1000.slice/session-3.scope",
	}
	p.SetArgv([]string{"python3", "-c", "print(open('/etc/shadow').read())"})
	f := &File{}
	f.SetPath("/etc/shadow")
	f.SetActions("open", "read", "close")
	return &Event{
		UUID:      "5d2c1f3a-8b7e-4a6d-b1c0-9e8f7a6b5c02",
		Timestamp: sampleTime(time.Second),
		EventType: TypeFileAccess,
		Note:      "",
		Metadata: sampleMetadata("credentials_files_access", "file_access", "Access to credentials files",
			"high", "credential_access", "unsecured_credentials", "credentials_in_files"),
		Process: p,
		File:    f,
		Background: Background{
			Ancestry: sampleAncestry(ancestorOf(p)),
			Files: Files{Root: FSDir{AbsPath: "/", BaseName: "/", Dirs: []FSDir{
				{AbsPath: "/etc", BaseName: "etc", Files: []FSFile{
					{AbsPath: "/etc/shadow", BaseName: "shadow", Actions: []string{"open", "read", "close"}},
				}},
			}}},
		},
		Scenario: sampleScenario(),
	}
}

func sampleNetworkPeer() *Event {
	p := minerProcess()
	local := Node{Address: "198.18.0.2", Name: "", Names: []string{}, Port: 51234}
	remote := Node{Address: "198.18.7.7", Name: "pool.supportxmr.com",
		Names: []string{"pool.supportxmr.com"}, Port: 443}
	return &Event{
		UUID:      "9a7b6c5d-4e3f-4a1b-8c2d-1e0f9a8b7c03",
		Timestamp: sampleTime(2 * time.Second),
		EventType: TypeNetworkPeer,
		Note:      "",
		Metadata: sampleMetadata("crypto_miner_pool", "network_peer", "Connection to a mining pool",
			"critical", "impact", "resource_hijacking", "compute_hijacking"),
		Process: p,
		Flow: &Flow{
			IPVersion: 4, Proto: "tcp", Local: local, Remote: remote, ServicePort: 443,
			Flags: Flags{Egress: true, Outgoing: true, Started: true, Ongoing: true},
			Phase: Phase{Direction: "outgoing", InitiatedBy: "local", Status: "ongoing", EndedBy: ""},
		},
		Background: Background{
			Ancestry: sampleAncestry(ancestorOf(p)),
			Flows: Flows{IPVersion: 4, Protocols: []ProtoFlows{{Proto: "tcp", Pairs: []Pair{{
				Nodes: PairNodes{
					Local:  Peer{Address: local.Address, Name: local.Name, Names: []string{}},
					Remote: Peer{Address: remote.Address, Name: remote.Name, Names: []string{"pool.supportxmr.com"}},
				},
				PortMatrix: []PortEntry{{SrcPort: 51234, DstPort: 443, Phase: "ongoing"}},
			}}}}},
		},
		Scenario: sampleScenario(),
	}
}
