#!/usr/bin/env bash
# Side-by-side L4 benchmark: lbkit's TCP/UDP proxies against a minimal Go
# io.Copy proxy, HAProxy (splice) and nginx stream, on 127.0.0.1 only.
# Usage: examples/bench/l4/run.sh [l4bench run flags, e.g. -duration 10s -reps 3]
# Writes the raw results to $OUT (default docs/bench/proxy-l4.txt).
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-docs/bench/proxy-l4.txt}

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v iperf3 >/dev/null || need+=(iperf3)
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/l4bench" ./examples/bench/l4

mkdir -p "$(dirname "$OUT")"
{
	echo "# command: examples/bench/l4/run.sh $*"
	echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(go version)"
	echo "# nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
	echo "# peers: $(haproxy -v | head -1 | cut -d' ' -f1-3); nginx $(nginx -v 2>&1 | cut -d/ -f2); $(iperf3 --version | head -1 | cut -d' ' -f1-2)"
} >"$OUT.tmp"
# Every program the run starts is killed by it when its measurement ends;
# each measurement is bounded (-duration, plus a hard limit).
L4BENCH_OUT="$OUT.body" timeout 3600 "$bin/l4bench" run "$@" 2>"$bin/progress.log" || { cat "$bin/progress.log" >&2; exit 1; }
cat "$OUT.tmp" "$OUT.body" >"$OUT"
echo "# per-run values (Gbit/s or conn/s):" >>"$OUT"
grep -E '^(bulk TCP|short conns|UDP goodput|UDP loss) ' "$bin/progress.log" | sed 's/^/#   /' >>"$OUT"
rm -f "$OUT.tmp" "$OUT.body"
cat "$OUT"
