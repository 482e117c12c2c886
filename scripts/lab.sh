#!/usr/bin/env bash
# The laptop lab: runs a VNFChain with cnf-dataplane in a network namespace, drives real UDP traffic through
# it with pktgen from a client namespace, and prints what each function did (counters, drops by reason,
# latency percentiles from the kernel histograms) next to what pktgen measured end to end.
# Usage: scripts/lab.sh [CHAIN.yaml] (default examples/lab.yaml; its ingress interface must be eth0).
# Needs root; leaves nothing behind (namespaces, processes, files) even when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
chain=${1:-examples/lab.yaml}
bin=target/release
[[ $(id -u) -eq 0 ]] || { echo "lab: needs root (network namespaces and eBPF)" >&2; exit 1; }

tag="bvnf-lab-$$"
client="$tag-client" cnf="$tag-cnf" tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$client" 2>/dev/null || true
  ip netns del "$cnf" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

echo "== Network: $client (192.0.2.1) <-veth-> $cnf eth0 (192.0.2.2), chain from $chain"
ip netns add "$client"
ip netns add "$cnf"
ip link add "${tag:0:8}c" type veth peer name "${tag:0:8}n"
ip link set "${tag:0:8}c" netns "$client"
ip link set "${tag:0:8}n" netns "$cnf"
ip -n "$client" link set "${tag:0:8}c" name eth0
ip -n "$cnf" link set "${tag:0:8}n" name eth0
for ns in "$client" "$cnf"; do
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  # tx checksum offload on veth would hand UDP with partial checksums to XDP
  ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null 2>&1 || true
done
ip -n "$client" addr add 192.0.2.1/24 dev eth0
ip -n "$cnf" addr add 192.0.2.2/24 dev eth0

echo "== cnf-dataplane: attaching the chain"
ip netns exec "$cnf" "$bin/cnf-dataplane" --config "$chain" --grpc-socket "$tmp/dp.sock" \
  --metrics-listen 127.0.0.1:9090 2> "$tmp/dataplane.log" &
pids+=($!)
for _ in $(seq 200); do [[ -S $tmp/dp.sock ]] && break; sleep 0.05; done
sed -n 's/^\[[^]]*\] */   /p' "$tmp/dataplane.log"
[[ -S $tmp/dp.sock ]] || { echo "lab: cnf-dataplane did not start:" >&2; cat "$tmp/dataplane.log" >&2; exit 1; }

echo "== Traffic: 10 kpps to port 9000 (allowed, under the 20 kpps policer), 2 kpps to port 9001 (denied), 3 s"
ip netns exec "$cnf" "$bin/pktgen" recv --bind 0.0.0.0:9000 --idle 2 --json > "$tmp/recv.json" 2>/dev/null &
recv=$!
pids+=($recv)
sleep 0.3
ip netns exec "$client" "$bin/pktgen" send --dst 192.0.2.2:9001 --rate 2000 --duration 3 --json > "$tmp/denied.json" 2>/dev/null &
pids+=($!)
ip netns exec "$client" "$bin/pktgen" send --dst 192.0.2.2:9000 --rate 10000 --duration 3 --flows 4 --json > "$tmp/sent.json"
wait "$recv" || true

scrape() { ip netns exec "$cnf" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9090; printf "GET /metrics HTTP/1.0\r\nHost: lab\r\n\r\n" >&3; cat <&3'; }
scrape > "$tmp/metrics.txt"

echo
echo "== pktgen, end to end (client -> chain -> receiver)"
python3 - "$tmp/sent.json" "$tmp/recv.json" "$tmp/denied.json" <<'PY'
import json, sys
sent, recv, denied = (json.load(open(f)) for f in sys.argv[1:4])
lat = recv["latency"]
print(f"   port 9000: sent {sent['sent']} at {sent['pps']:.0f} pps, received {recv['unique']}, lost {recv['lost']}, "
      f"reordered {recv['reordered']}, duplicates {recv['duplicates']}")
print(f"   one-way latency: p50 {lat['p50_ns']/1e3:.1f} us, p90 {lat['p90_ns']/1e3:.1f} us, p99 {lat['p99_ns']/1e3:.1f} us, "
      f"p99.9 {lat['p999_ns']/1e3:.1f} us, max {lat['max_ns']/1e3:.1f} us; jitter (RFC 3550) {recv['jitter_rfc3550_ns']/1e3:.1f} us")
print(f"   port 9001: sent {denied['sent']} (the firewall should drop every one)")
PY

echo
echo "== cnf-dataplane, per function (from the kernel's per-CPU counters and latency histograms)"
awk '
  /^buildvnf_function_packets_total\{/ { match($0, /function="[^"]+"/); f=substr($0, RSTART+10, RLENGTH-11); pin[f]=$NF; order[++n]=f }
  /^buildvnf_function_passed_total\{/ { match($0, /function="[^"]+"/); f=substr($0, RSTART+10, RLENGTH-11); pass[f]=$NF }
  /^buildvnf_function_drops_total\{/ { match($0, /function="[^"]+"/); f=substr($0, RSTART+10, RLENGTH-11);
      match($0, /reason="[^"]+"/); r=substr($0, RSTART+8, RLENGTH-9); if ($NF > 0) drops[f]=drops[f] sprintf("%s=%d ", r, $NF) }
  /^buildvnf_function_latency_seconds_bucket\{/ { match($0, /function="[^"]+"/); f=substr($0, RSTART+10, RLENGTH-11);
      match($0, /le="[^"]+"/); le=substr($0, RSTART+4, RLENGTH-5); nb[f]++; bl[f, nb[f]]=le; bc[f, nb[f]]=$NF }
  function q(f, p,   i, tot) { tot=bc[f, nb[f]]; if (tot==0) return "-"; for (i=1;i<=nb[f];i++) if (bc[f,i] >= p*tot) return sprintf("%.0f ns", bl[f,i]*1e9); return "-" }
  END {
    printf "   %-8s %10s %10s  %-28s %10s %10s\n", "function", "in", "passed", "drops", "p50<=", "p99<="
    for (i=1;i<=n;i++) { f=order[i]; printf "   %-8s %10d %10d  %-28s %10s %10s\n", f, pin[f], pass[f], (drops[f]==""?"-":drops[f]), q(f,0.5), q(f,0.99) }
  }' "$tmp/metrics.txt"
grep -E '^buildvnf_attach_info' "$tmp/metrics.txt" | sed 's/^/   /'
echo
echo "== Torn down: no namespace, process or file of this run is left"
