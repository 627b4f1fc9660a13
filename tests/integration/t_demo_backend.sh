#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#
# t_demo_backend.sh - the demo EAS backend (tools/eas-demo-backend.c) on its own,
# on loopback: it is the peer other integration tests trust, so check it first.
#
#   tests/integration/t_demo_backend.sh [BUILD_DIR]    (default: build)
#
# Exit 0 all passed, 1 any failure, 77 skipped (a needed tool is missing).
# No root needed. Binary request bytes are sent with bash's /dev/tcp so the
# test controls every byte that goes on the wire.
set -euo pipefail

cd "$(dirname "$0")/../.."
BUILD=${1:-${EG_BUILD:-build}}
BIN=$BUILD/eas-demo-backend
EAS=/Microsoft-Server-ActiveSync

failures=0
pids=()
WORK=
BK_PORT='' BK_PID=''
main_port='' main_pid='' ca_port=''

pass() { printf 'PASS: %s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*"
	failures=$((failures + 1))
}
skip() {
	printf 'SKIP: %s\n' "$*"
	exit 77
}

# Kill only what this script started, then remove its scratch directory.
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	[ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT

need_tools() {
	local t
	for t in curl xml2wbxml sha256sum awk cmp timeout; do
		command -v "$t" >/dev/null || skip "$t not installed (make deps)"
	done
	[ -x "$BIN" ] || {
		echo "FAIL: $BIN not built (make $BIN)"
		exit 1
	}
}

# start_backend NAME HOST ARGS... : start an instance on a free port of HOST
# (port 0 + --port-file, so no race for a port) and wait until it listens.
# Sets BK_PORT and BK_PID.
start_backend() {
	local name=$1 host=$2
	shift 2
	local pf=$WORK/$name.port
	"$BIN" --listen "$host:0" --port-file "$pf" --pidfile "$WORK/$name.pid" "$@" \
		2>>"$WORK/$name.log" &
	BK_PID=$!
	pids+=("$BK_PID")
	local tries=100
	while [ ! -s "$pf" ] && [ $tries -gt 0 ]; do
		sleep 0.05
		tries=$((tries - 1))
	done
	[ -s "$pf" ] || {
		echo "FAIL: backend $name did not start"
		cat "$WORK/$name.log"
		exit 1
	}
	BK_PORT=$(cat "$pf")
}

# raw_exchange PORT REQFILE OUTFILE : send REQFILE byte for byte, collect
# everything until the server closes (at most 5 s).
raw_exchange() {
	local fd
	exec {fd}<>"/dev/tcp/127.0.0.1/$1"
	cat "$2" >&"$fd"
	timeout 5 cat <&"$fd" >"$3" || true
	exec {fd}>&-
}

# header FILE NAME : value of the first response header NAME (CR stripped).
header() {
	awk -v n="$2" 'BEGIN { RS = "\r\n"; n = tolower(n) }
		/^$/ { exit } { split($0, kv, ": "); if (tolower(kv[1]) == n) { print substr($0, length(kv[1]) + 3); exit } }' "$1"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

make_wbxml() {
	cat >"$WORK/sync.xml" <<'EOF'
<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE ActiveSync PUBLIC "-//MICROSOFT//DTD ActiveSync//EN" "http://www.microsoft.com/">
<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>0</SyncKey><CollectionId>1</CollectionId></Collection></Collections></Sync>
EOF
	xml2wbxml -a -n -o "$WORK/sync.wbxml" "$WORK/sync.xml" >/dev/null 2>&1 ||
		skip "xml2wbxml failed to encode the test document"
}

test_options() {
	local h=$WORK/options.h
	curl -sS -o /dev/null -D "$h" -X OPTIONS "http://127.0.0.1:$main_port$EAS?User=alice"
	local ok=1
	grep -q '^HTTP/1.1 200' "$h" || ok=0
	[ "$(header "$h" MS-ASProtocolVersions)" = "2.5,12.0,12.1,14.0,14.1,16.0,16.1" ] || ok=0
	header "$h" MS-ASProtocolCommands | grep -q '^Sync,.*FolderSync.*Provision' || ok=0
	[ "$(header "$h" MS-Server-ActiveSync)" = "15.1" ] || ok=0
	[ "$(header "$h" Allow)" = "OPTIONS,POST" ] || ok=0
	[ "$(header "$h" Public)" = "OPTIONS,POST" ] || ok=0
	[ "$(header "$h" X-Backend)" = "cas1" ] || ok=0
	[ "$(header "$h" Content-Length)" = "0" ] || ok=0
	if [ $ok = 1 ]; then pass "OPTIONS answers with the Exchange header set"; else
		fail "OPTIONS headers:"
		cat "$h"
	fi
}

test_post_sha() {
	local h=$WORK/post.h body=$WORK/post.body
	curl -sS -D "$h" -o "$body" -H 'Content-Type: application/vnd.ms-sync.wbxml' \
		--data-binary @"$WORK/sync.wbxml" \
		"http://127.0.0.1:$main_port$EAS/default.eas?Cmd=Sync&User=t2%40dev.fd&DeviceId=X1&DeviceType=Android"
	local want got
	want=$(sha "$WORK/sync.wbxml")
	got=$(header "$h" X-Echo-Body-SHA256)
	if [ "$got" = "$want" ] && [ "$(header "$h" X-Echo-User)" = "t2@dev.fd" ] &&
		[ "$(header "$h" Content-Type)" = "application/vnd.ms-sync.wbxml" ] &&
		[ "$(od -An -tx1 "$body" | tr -d ' \n')" = "03016a000000454e0331000101" ]; then
		pass "POST Sync echoes body SHA-256 and user, answers a Sync/Status envelope"
	else
		fail "POST Sync: sha=$got want=$want"
		cat "$h"
	fi
}

# Chunked upload with an extension and a trailer: the record must be the
# exact wire bytes, the metadata the de-chunked length.
test_chunked_record() {
	local w=$WORK/sync.wbxml req=$WORK/chunked.req out=$WORK/chunked.out
	local n
	n=$(stat -c %s "$w")
	{
		printf 'POST %s?Cmd=Sync&User=bob HTTP/1.1\r\nHost: eas.test\r\n' "$EAS"
		printf 'Authorization: Basic Ym9iOnRlc3Q=\r\nTransfer-Encoding: chunked\r\n'
		printf 'Connection: close\r\n\r\n'
		printf '5;name=val\r\n'
		head -c 5 "$w"
		printf '\r\n%x\r\n' $((n - 6))
		tail -c +6 "$w" | head -c $((n - 6))
		printf '\r\n1\r\n'
		tail -c 1 "$w"
		printf '\r\n0\r\nX-Trailer: t\r\n\r\n'
	} >"$req"
	raw_exchange "$main_port" "$req" "$out"
	local seq
	seq=$(header "$out" X-Request-Seq)
	local rec=$WORK/rec/$seq
	if [ -n "$seq" ] && cmp -s "$req" "$rec.req" && grep -qx 'chunked=1' "$rec.meta" &&
		grep -qx "body_len=$n" "$rec.meta" && grep -qx 'method=POST' "$rec.meta" &&
		[ "$(header "$out" X-Echo-Body-SHA256)" = "$(sha "$w")" ]; then
		pass "chunked upload recorded byte-exact ($(stat -c %s "$req") bytes), de-chunked body_len=$n"
	else
		fail "chunked upload record (seq=$seq)"
		cat "$out" "$rec.meta" 2>/dev/null || true
	fi
}

test_pipelining() {
	local req=$WORK/pipe.req out=$WORK/pipe.out
	{
		printf 'GET /health HTTP/1.1\r\nHost: a\r\n\r\n'
		printf 'POST %s?Cmd=Ping HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc' "$EAS"
		printf 'GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'
	} >"$req"
	raw_exchange "$main_port" "$req" "$out"
	local codes
	codes=$(grep -a -o 'HTTP/1.1 [0-9]*' "$out" | cut -d' ' -f2 | tr '\n' ' ')
	if [ "$codes" = "200 200 404 " ]; then
		pass "three pipelined requests answered in order"
	else
		fail "pipelining: got status codes '$codes'"
	fi
}

# Differential check with real traffic: all captured client requests pipelined
# on one connection must be answered in order and recorded byte for byte.
test_captures() {
	local dir=tests/data/eas-captures req=$WORK/caps.req out=$WORK/caps.out
	local files=("$dir"/*.http)
	{
		cat "${files[@]}"
		printf 'GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'
	} >"$req"
	raw_exchange "$main_port" "$req" "$out"
	local first n i f recs=() blen
	declare -A body_bytes=()
	while IFS=$'\t' read -r f _ _ _ _ blen _; do
		body_bytes[$f]=$blen
	done <"$dir/MANIFEST.tsv"
	first=$(header "$out" X-Request-Seq)
	n=$(grep -a -o 'HTTP/1.1 [0-9]* ' "$out" | wc -l)
	for i in "${!files[@]}"; do
		printf -v f '%s/rec/%08d' "$WORK" $((10#$first + i))
		recs+=("$f")
	done
	# Same bytes, same request boundaries, same de-framed bodies.
	cat "${files[@]}" >"$WORK/caps.want"
	cat "${recs[@]/%/.req}" >"$WORK/caps.got" 2>/dev/null || true
	stat -c %s "${files[@]}" >"$WORK/caps.len.want"
	sed -n 's/^wire_len=//p' "${recs[@]/%/.meta}" >"$WORK/caps.len.got" 2>/dev/null || true
	for f in "${files[@]}"; do
		tail -c "${body_bytes[$(basename "$f")]:-0}" "$f" | sha256sum | cut -d' ' -f1
	done >"$WORK/caps.sha.want"
	sed -n 's/^body_sha256=//p' "${recs[@]/%/.meta}" >"$WORK/caps.sha.got" 2>/dev/null || true
	if [ "$n" = $((${#files[@]} + 1)) ] && cmp -s "$WORK/caps.want" "$WORK/caps.got" &&
		cmp -s "$WORK/caps.len.want" "$WORK/caps.len.got" &&
		cmp -s "$WORK/caps.sha.want" "$WORK/caps.sha.got"; then
		pass "${#files[@]} pipelined captures answered and recorded byte-exact, body SHA-256 match"
	else
		fail "captures: $n responses for $((${#files[@]} + 1)) requests, or records differ"
	fi
}

test_malformed() {
	local req=$WORK/bad.req out=$WORK/bad.out
	printf 'POST %s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n' "$EAS" >"$req"
	raw_exchange "$main_port" "$req" "$out"
	if grep -aq '^HTTP/1.1 400 ' "$out" && [ "$(header "$out" Connection)" = "close" ] &&
		kill -0 "$main_pid"; then
		pass "malformed chunked body -> 400 + close, backend alive"
	else
		fail "malformed request handling"
		cat "$out"
	fi
}

# Offsets pattern: 16-byte blocks "%015x\n" of their own offset.
test_large() {
	local out=$WORK/large.out want got
	curl -sS -o "$out" "http://127.0.0.1:$main_port/big?egtest_size=5000000"
	want=$(awk 'BEGIN { for (i = 0; i < 312500; i++) printf "%015x\n", i * 16 }' | sha256sum | cut -d' ' -f1)
	got=$(sha "$out")
	if [ "$(stat -c %s "$out")" = 5000000 ] && [ "$got" = "$want" ]; then
		pass "egtest_size=5000000 returns 5,000,000 bytes of the offset pattern"
	else
		fail "egtest_size=5000000: $(stat -c %s "$out") bytes"
	fi
	curl -sS -o "$out" "http://127.0.0.1:$main_port/big?egtest_size=100000&egtest_chunked=1"
	if [ "$(stat -c %s "$out")" = 100000 ] && cmp -s "$out" <(awk 'BEGIN { for (i = 0; i < 6250; i++) printf "%015x\n", i * 16 }'); then
		pass "egtest_chunked=1 body de-chunks to the same pattern"
	else
		fail "egtest_chunked=1 body"
	fi
}

test_egtest_status() {
	local code
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -d x "http://127.0.0.1:$main_port$EAS?Cmd=Sync&egtest_status=449")
	if [ "$code" = 449 ]; then pass "egtest_status=449 forces the status"; else fail "egtest_status: $code"; fi
}

# --auth: only the listed Basic credentials pass on the EAS path (as Exchange
# answers a wrong password); the health path needs none.
test_auth() {
	start_backend auth 127.0.0.1 --name auth1 --auth alice:secret
	local p=$BK_PORT got=
	for u in alice:secret alice:wrong bob:secret; do
		got+="$(curl -sS -o /dev/null -w '%{http_code}' -u "$u" -X POST -d x "http://127.0.0.1:$p$EAS?Cmd=Sync&User=alice&DeviceId=A&DeviceType=t") "
	done
	got+="$(curl -sS -o /dev/null -w '%{http_code}' -X OPTIONS "http://127.0.0.1:$p$EAS") "
	got+="$(curl -sS -o /dev/null -D "$WORK/auth.h" -w '%{http_code}' -X POST -d x "http://127.0.0.1:$p$EAS?Cmd=Sync") "
	got+="$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/health")"
	if [ "$got" = "200 401 401 401 401 200" ] && grep -qi '^WWW-Authenticate: Basic' "$WORK/auth.h"; then
		pass "--auth: right password 200; wrong, other user, none 401 with WWW-Authenticate; health 200"
	else
		fail "--auth: $got"
	fi
}

# SOGo-like: after one response the connection closes, with no Connection
# header; the second pipelined request is neither answered nor recorded.
test_close_after() {
	local req=$WORK/ca.req out=$WORK/ca.out
	{
		printf 'GET /health HTTP/1.1\r\nHost: a\r\n\r\n'
		printf 'GET /health?second=1 HTTP/1.1\r\nHost: a\r\n\r\n'
	} >"$req"
	local t0 t1
	t0=$(date +%s%N)
	raw_exchange "$ca_port" "$req" "$out"
	t1=$(date +%s%N)
	local n
	n=$(grep -ac '^HTTP/1.1 ' "$out" || true)
	if [ "$n" = 1 ] && [ -z "$(header "$out" Connection)" ] &&
		[ $(((t1 - t0) / 1000000)) -lt 4000 ] && ! grep -rqs 'second=1' "$WORK/carec"; then
		pass "--close-after 1 closes after the first response, without Connection: close"
	else
		fail "--close-after 1: $n responses, $(((t1 - t0) / 1000000)) ms"
		cat "$out"
	fi
}

# A held Ping must not block other clients.
test_hold_ping() {
	local url=http://127.0.0.1:$ca_port
	curl -sS -o /dev/null -w '%{time_total}\n' -d x "$url$EAS?Cmd=Ping" >"$WORK/ping.t" &
	local cpid=$!
	sleep 0.2
	local th
	th=$(curl -sS -o /dev/null -w '%{time_total}' "$url/health")
	wait "$cpid"
	local tp
	tp=$(cat "$WORK/ping.t")
	if awk -v h="$th" -v p="$tp" 'BEGIN { exit !(h < 0.5 && p >= 1.4) }'; then
		pass "Ping held ${tp}s while /health answered in ${th}s"
	else
		fail "hold-ping: ping ${tp}s health ${th}s"
	fi
}

test_ipv6() {
	[ -e /proc/net/if_inet6 ] || {
		echo "SKIP: no IPv6 (sub-test)"
		return 0
	}
	start_backend v6 '[::1]' --quiet
	local code
	code=$(curl -sS -g -o /dev/null -w '%{http_code}' "http://[::1]:$BK_PORT/health" || true)
	if [ "$code" = 200 ]; then pass "listens on [::1]"; else fail "IPv6 listen: $code"; fi
}

test_sigterm() {
	kill -TERM "$main_pid"
	local rc=0 t0
	t0=$(date +%s%N)
	wait "$main_pid" || rc=$?
	local ms=$((($(date +%s%N) - t0) / 1000000))
	if [ $rc = 0 ] && [ $ms -lt 2000 ] && [ ! -e "$WORK/main.pid" ]; then
		pass "SIGTERM: exit 0 in ${ms} ms, pidfile removed"
	else
		fail "SIGTERM: rc=$rc after ${ms} ms"
	fi
}

main() {
	need_tools
	WORK=$(mktemp -d /tmp/t_demo_backend.XXXXXX)
	make_wbxml
	start_backend main 127.0.0.1 --name cas1 --record "$WORK/rec"
	main_port=$BK_PORT main_pid=$BK_PID
	start_backend ca 127.0.0.1 --name sogo1 --close-after 1 --hold-ping-ms 1500 \
		--record "$WORK/carec"
	ca_port=$BK_PORT
	test_options
	test_post_sha
	test_chunked_record
	test_pipelining
	test_captures
	test_malformed
	test_large
	test_egtest_status
	test_auth
	test_close_after
	test_hold_ping
	test_ipv6
	test_sigterm
	if [ $failures -ne 0 ]; then
		echo "t_demo_backend: $failures failure(s); logs:"
		cat "$WORK"/*.log
		exit 1
	fi
	echo "t_demo_backend: all passed"
}

main "$@"
