#!/bin/sh
# make demo: the daemon on the built-in recipes, in a throwaway state directory and a network
# namespace of its own, against harmless stand-ins of the headline threats. Needs root.
set -eu
BIN=${BIN:-./bin/jibril}
[ "$(id -u)" = 0 ] || { echo "make demo needs root (eBPF sensors, network namespaces)"; exit 1; }
[ -x "$BIN" ] || { echo "no $BIN: run make build first"; exit 1; }

T=$(mktemp -d /tmp/jibril-demo.XXXXXX)
NS=jdemo$$
TARGET=jdemot$$
SUDOERS=/etc/sudoers.d/zz-jibril-demo-$$
PID=
MADE_SUDOERS_D=
cleanup() {
	[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	ip netns del "$TARGET" 2>/dev/null || true
	rm -f "$SUDOERS"
	[ -n "$MADE_SUDOERS_D" ] && rmdir /etc/sudoers.d 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "network namespaces: $NS (the daemon) and $TARGET (198.18.77.2, a scan target)"
ip netns add "$NS"
ip netns add "$TARGET"
ip -n "$NS" link add jd0 type veth peer name jd1 netns "$TARGET"
ip -n "$NS" addr add 198.18.77.1/24 dev jd0
ip -n "$TARGET" addr add 198.18.77.2/24 dev jd1
for n in "$NS" "$TARGET"; do ip -n "$n" link set lo up; done
ip -n "$NS" link set jd0 up
ip -n "$TARGET" link set jd1 up

cat > "$T/config.yaml" <<CFG
printers:
  stdout: {enabled: false}
  file: {path: $T/detections.jsonl}
metrics: {enabled: false}
CFG

say "jibril run (built-in recipes; only crypto_miner_binary enforces, the others record what they would do)"
nsenter --net=/run/netns/"$NS" "$BIN" run --config "$T/config.yaml" --state-dir "$T/state" >"$T/out" 2>"$T/log" &
PID=$!
i=0
until grep -qs 'msg=ready' "$T/log"; do
	i=$((i + 1))
	if [ $i -gt 300 ] || ! kill -0 "$PID" 2>/dev/null; then cat "$T/log"; echo "the daemon did not start"; exit 1; fi
	sleep 0.1
done
grep 'msg=ready' "$T/log"

say "1. a copied binary named like a miner: $T/xmrig"
cp /bin/sleep "$T/xmrig"
if "$T/xmrig" 30; then echo "xmrig ran to its end (not killed)"; else echo "xmrig ended with status $? (137 = SIGKILL by jibril)"; fi

say "2. a port scan of $TARGET"
if command -v nmap >/dev/null; then
	ip netns exec "$NS" nmap -sT -Pn -p 20-30 198.18.77.2 >/dev/null 2>&1 || true
	echo "nmap -sT -p 20-30 198.18.77.2 done"
else
	echo "nmap is not installed: skipped (apt-get install nmap)"
fi

say "3. a write to a sudoers file: $SUDOERS (a comment only, removed at the end)"
if [ ! -d /etc/sudoers.d ]; then mkdir -m 0750 /etc/sudoers.d && MADE_SUDOERS_D=1; fi
printf '# written by the jibril demo, removed when it ends\n' >"$SUDOERS"
chmod 0440 "$SUDOERS"
rm -f "$SUDOERS"

sleep 1
say "what was detected (printer: $T/detections.jsonl)"
sed -e 's/.*"event_type":"\([^"]*\)".*"metadata":{"kind":"[^"]*","name":"\([^"]*\)".*"process":{[^}]*"pid":\([0-9]*\)[^}]*"exe":"\([^"]*\)".*/\2  (\1)  pid \3  \4/' "$T/detections.jsonl" | sort | uniq -c

say "what the reactions did"
grep 'msg="reaction done"' "$T/log" | sed -e 's/.*recipe=\([^ ]*\).*mode=\([^ ]*\) status=\([^ ]*\).*calls=\([0-9]*\).*/\1: mode \2, status \3, \4 helper calls/' | sort | uniq -c

say "audit trail"
"$BIN" audit list --state-dir "$T/state"
"$BIN" audit verify --state-dir "$T/state"

say "stopping (SIGTERM) and cleaning up"
