#!/usr/bin/env bash
# Robustness figures of docs/robustness.md, measured on 127.0.0.1 only:
#   (a) UDP floods against lbd with default settings under a descriptor limit:
#       one source address on many ports, and many source addresses;
#   (b) TCP connections held open from one address;
#   (c) memory per held idle TCP connection, lbkit beside HAProxy;
#   (d) memory per idle HTTP keep-alive connection, lbkit beside HAProxy.
# Normal TCP, HTTP and UDP clients run during every attack; every listener
# must serve afterwards. Every program started here is stopped by it, and
# every step is bounded (flood's -duration, timeout).
# Usage: examples/bench/flood/run.sh [a|b|c|d ...]   (default: all)
# Writes the raw results to $OUT (default docs/bench/robustness.txt).
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-docs/bench/robustness.txt}
LIMIT=${LIMIT:-20000}          # lbd's RLIMIT_NOFILE in (a) and (b)
DURATION=${DURATION:-30s}      # each attack
RATE=${RATE:-6000}             # UDP datagrams a second
PORTS=${PORTS:-30000}          # UDP source ports of the one address
CONNS=${CONNS:-10000}          # (b) held connections
HELD=${HELD:-8000}             # (c) and (d) held idle connections
BASELINE_REF=${BASELINE_REF:-} # also measure lbd built from this git ref ("lbd-before")
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(a b c d)

bin=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$bin"
}
trap cleanup EXIT

go build -o "$bin/lbd" ./cmd/lbd
go build -o "$bin/flood" ./examples/bench/flood
lbds=(lbd)
if [ -n "$BASELINE_REF" ]; then
	mkdir "$bin/before"
	git archive "$BASELINE_REF" | tar -x -C "$bin/before"
	dir=./cmd/lbd
	[ -d "$bin/before/cmd/lbd" ] || dir=./examples/lbd # before lbd moved to cmd/
	(cd "$bin/before" && go build -o "$bin/lbd-before" "$dir")
	lbds+=(lbd-before)
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost -keyout "$bin/key.pem" -out "$bin/cert.pem" 2>/dev/null

# lbd with every listener kind and default settings otherwise (no flows
# section: the budget, capacity and per-source cap follow the limit).
cat >"$bin/lbd.yaml" <<YAML
listeners:
  - {name: tcp, protocol: tcp, address: 127.0.0.1:19090, forward_to: echo}
  - {name: tls, protocol: tls, address: 127.0.0.1:19443, forward_to: echo, certificates: [{cert_file: cert.pem, key_file: key.pem}]}
  - {name: http, protocol: http, address: 127.0.0.1:19080, forward_to: web}
  - {name: https, protocol: https, address: 127.0.0.1:19444, forward_to: web, certificates: [{cert_file: cert.pem, key_file: key.pem}]}
  - {name: udp, protocol: udp, address: 127.0.0.1:19053, forward_to: dns}
target_groups:
  - {name: echo, protocol: tcp, targets: [{address: 127.0.0.1:19091}]}
  - {name: web, protocol: http, targets: [{address: 127.0.0.1:19081}]}
  - {name: dns, protocol: udp, targets: [{address: 127.0.0.1:19054}], health_check: {protocol: tcp}}
YAML

"$bin/flood" targets -tcp 127.0.0.1:19091 -http 127.0.0.1:19081 -udp 127.0.0.1:19054 2>"$bin/targets.log" &
pids+=($!)

lbd_pid=
start_lbd() { # config, descriptor limit[, binary]
	prlimit --nofile="$2:$2" "$bin/${3:-lbd}" -config "$1" -admin 127.0.0.1:19900 -log-format json >"$bin/lbd.log" 2>&1 &
	lbd_pid=$!
	pids+=("$lbd_pid")
	# Ready once every target passed its first health check (the first
	# check comes at a random moment of the first second).
	for _ in $(seq 300); do
		curl -sf http://127.0.0.1:19900/health 2>/dev/null |
			jq -e '[.. | objects | select(has("serving")) | .serving] | length > 0 and all' >/dev/null && return 0
		sleep 0.1
	done
	cat "$bin/lbd.log" >&2
	return 1
}
stop_lbd() {
	kill -TERM "$lbd_pid"
	wait "$lbd_pid" || true
}
report_lbd() { # what lbd says after an attack
	echo "## lbd after the attack"
	jq -c 'select(.msg | test("descriptor budget|limit on open files|accept|stopped serving"))' "$bin/lbd.log" | sed 's/^/# log: /'
	curl -sf 'http://127.0.0.1:19900/diagnose?format=text' | sed 's/^/# diagnose: /'
	curl -sf http://127.0.0.1:19900/stats | jq -c '{flows: .Flows.Total, udp: .Flows.UDP, descriptors: .Descriptors,
		listeners: [.Listeners[] | {name: .Name, accept_errors: .AcceptErrors, refused_descriptors: ((.TCP // .UDP // .HTTP).RejectedDescriptors), refused_source: ((.TCP // .UDP // {}).RejectedSourceLimit)}]}' | sed 's/^/# stats: /'
}
slab() { awk 'NR>2 {s += $3 * $4} END {print s}' /proc/slabinfo; }
rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
measure() { # name pid addr use (-ping or -get)
	"$bin/flood" hold -target "$3" -conns 200 -sources 127.0.3.1-127.0.3.16 "$4" -for 1s >/dev/null # warm up
	sleep 2
	local r0 s0
	r0=$(rss "$2")
	s0=$(slab)
	rm -f "$bin/ready"
	"$bin/flood" hold -target "$3" -conns "$HELD" -sources 127.0.3.1-127.0.3.16 "$4" -for 25s -ready "$bin/ready" >"$bin/hold.log" &
	local hp=$!
	for _ in $(seq 300); do [ -e "$bin/ready" ] && break; sleep 0.1; done
	sleep 5 # let the proxy finish accepting and dialling
	local r1 s1
	r1=$(rss "$2")
	s1=$(slab)
	if [ "$1" != haproxy ]; then
		curl -sf http://127.0.0.1:19900/metrics | grep -E '^go_(goroutines|memstats_(heap_inuse|stack_inuse|heap_objects)_bytes|memstats_heap_objects) ' | sed "s/^/# $1 while held: /"
	fi
	wait "$hp"
	echo "# $1: $(tr '\n' ' ' <"$bin/hold.log")"
	echo "$1: RSS $r0 -> $r1 bytes: $(( (r1 - r0) / HELD )) bytes per held connection; kernel slab (whole machine: client, proxy and target sockets) $(( (s1 - s0) / HELD )) bytes per connection"
}

normal=(-tcp 127.0.0.1:19090 -tls 127.0.0.1:19443 -http 127.0.0.1:19080 -https 127.0.0.1:19444 -udp 127.0.0.1:19053)

mkdir -p "$(dirname "$OUT")"
{
	echo "# command: examples/bench/flood/run.sh ${parts[*]} (LIMIT=$LIMIT DURATION=$DURATION RATE=$RATE PORTS=$PORTS CONNS=$CONNS HELD=$HELD)"
	echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(go version)"
	echo "# nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); kernel $(uname -r)"
	echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	[ -z "$BASELINE_REF" ] || echo "# lbd-before: lbd built from $(git rev-parse --short "$BASELINE_REF"), for comparison"
} >"$OUT"

for part in "${parts[@]}"; do
	case $part in
	a)
		for l in "${lbds[@]}"; do
			for sources in 127.0.0.2 127.1.0.0-127.1.117.47; do
				ports=$PORTS
				[ "$sources" = 127.0.0.2 ] || ports=0
				start_lbd "$bin/lbd.yaml" "$LIMIT" "$l"
				{
					echo
					echo "## (a) $l: UDP flood from $sources (ports per address: $ports), $RATE datagrams/s for $DURATION, under RLIMIT_NOFILE $LIMIT"
					echo "# flood attack -mode udp -sources $sources -ports $ports -rate $RATE -duration $DURATION ${normal[*]}"
					timeout 300 "$bin/flood" attack -mode udp -sources "$sources" -ports "$ports" -rate "$RATE" -duration "$DURATION" "${normal[@]}" 2>&1 ||
						echo "# flood: a listener does not serve after the attack"
					report_lbd
				} >>"$OUT"
				stop_lbd
			done
		done
		;;
	b)
		for l in "${lbds[@]}"; do
			start_lbd "$bin/lbd.yaml" "$LIMIT" "$l"
			{
				echo
				echo "## (b) $l: $CONNS TCP connections from 127.0.0.2 held for $DURATION, under RLIMIT_NOFILE $LIMIT"
				echo "# flood attack -mode tcp-hold -sources 127.0.0.2 -conns $CONNS -duration $DURATION ${normal[*]}"
				timeout 300 "$bin/flood" attack -mode tcp-hold -sources 127.0.0.2 -conns "$CONNS" -duration "$DURATION" "${normal[@]}" 2>&1 ||
					echo "# flood: a listener does not serve after the attack"
				report_lbd
			} >>"$OUT"
			stop_lbd
		done
		;;
	c)
		command -v haproxy >/dev/null || {
			apt-get update -qq
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
		}
		# One TCP listener, no health check: what is measured is the
		# connections. Sources spread over 16 addresses, so that the
		# default per-source cap admits them all.
		cat >"$bin/mem.yaml" <<YAML
listeners:
  - {name: tcp, protocol: tcp, address: 127.0.0.1:19190, forward_to: echo}
target_groups:
  - {name: echo, protocol: tcp, targets: [{address: 127.0.0.1:19091}], health_check: {enabled: false}}
YAML
		cat >"$bin/haproxy.cfg" <<CFG
global
	maxconn 9000
	nbthread 2
defaults
	mode tcp
	timeout connect 5s
	timeout client 350s
	timeout server 350s
frontend f
	bind 127.0.0.1:19290
	default_backend b
backend b
	server s 127.0.0.1:19091
CFG
		{
			echo
			echo "## (c) memory per held idle TCP connection (client -> proxy -> echo target; one line echoed, then idle), $HELD connections from 16 addresses"
			echo "# haproxy: $(haproxy -v | head -1)"
			if [ -n "$BASELINE_REF" ]; then
				prlimit --nofile="$LIMIT:$LIMIT" "$bin/lbd-before" -config "$bin/mem.yaml" -admin 127.0.0.1:19900 >"$bin/lbd.log" 2>&1 &
				lbd_pid=$!
				pids+=("$lbd_pid")
				sleep 1
				kill -0 "$lbd_pid" || { cat "$bin/lbd.log" >&2; exit 1; }
				measure lbd-before "$lbd_pid" 127.0.0.1:19190 -ping
				stop_lbd
			fi
			prlimit --nofile="$LIMIT:$LIMIT" "$bin/lbd" -config "$bin/mem.yaml" -admin 127.0.0.1:19900 >"$bin/lbd.log" 2>&1 &
			lbd_pid=$!
			pids+=("$lbd_pid")
			sleep 1
			kill -0 "$lbd_pid" || { cat "$bin/lbd.log" >&2; exit 1; }
			measure lbd "$lbd_pid" 127.0.0.1:19190 -ping
			stop_lbd
			prlimit --nofile="$LIMIT:$LIMIT" haproxy -f "$bin/haproxy.cfg" -db >"$bin/haproxy.log" 2>&1 &
			hp=$!
			pids+=("$hp")
			sleep 1
			kill -0 "$hp" || { cat "$bin/haproxy.log" >&2; exit 1; }
			measure haproxy "$hp" 127.0.0.1:19290 -ping
			kill -TERM "$hp"
			wait "$hp" || true
		} >>"$OUT"
		;;
	d)
		command -v haproxy >/dev/null || {
			apt-get update -qq
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
		}
		# One HTTP listener, no health check. Each client sends one GET
		# and keeps its connection open and idle; both proxies keep a few
		# idle connections to the target for reuse.
		cat >"$bin/memhttp.yaml" <<YAML
listeners:
  - {name: http, protocol: http, address: 127.0.0.1:19180, forward_to: web}
target_groups:
  - {name: web, protocol: http, targets: [{address: 127.0.0.1:19081}], health_check: {enabled: false}}
YAML
		cat >"$bin/haproxy-http.cfg" <<CFG
global
	maxconn 9000
	nbthread 2
defaults
	mode http
	timeout connect 5s
	timeout client 350s
	timeout server 350s
	timeout http-keep-alive 350s
	http-reuse safe
frontend f
	bind 127.0.0.1:19280
	default_backend b
backend b
	server s 127.0.0.1:19081
CFG
		{
			echo
			echo "## (d) memory per idle HTTP/1.1 keep-alive connection (one GET answered, then idle), $HELD connections from 16 addresses"
			echo "# haproxy: $(haproxy -v | head -1)"
			prlimit --nofile="$LIMIT:$LIMIT" "$bin/lbd" -config "$bin/memhttp.yaml" -admin 127.0.0.1:19900 >"$bin/lbd.log" 2>&1 &
			lbd_pid=$!
			pids+=("$lbd_pid")
			sleep 1
			kill -0 "$lbd_pid" || { cat "$bin/lbd.log" >&2; exit 1; }
			measure lbd "$lbd_pid" 127.0.0.1:19180 -get
			stop_lbd
			prlimit --nofile="$LIMIT:$LIMIT" haproxy -f "$bin/haproxy-http.cfg" -db >"$bin/haproxy.log" 2>&1 &
			hp=$!
			pids+=("$hp")
			sleep 1
			kill -0 "$hp" || { cat "$bin/haproxy.log" >&2; exit 1; }
			measure haproxy "$hp" 127.0.0.1:19280 -get
			kill -TERM "$hp"
			wait "$hp" || true
		} >>"$OUT"
		;;
	*)
		echo "unknown part $part (a, b, c or d)" >&2
		exit 2
		;;
	esac
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"
cat "$OUT"
