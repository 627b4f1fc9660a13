#!/usr/bin/env bash
# Kernel TLS for the phone's leg (user/datapath/ktls.h), with real clients
# against the real daemon. Run by the kernel matrix (tests/kernel/suite.sh)
# on 6.1 and 6.12, which have kernel TLS; on a kernel without it (this build
# machine's 6.18: no CONFIG_TLS) only part 0 runs and the rest skips with the
# reason. The kernel's own counters (/proc/net/tls_stat) and `ss` say which
# connections the kernel carried, independently of the daemon.
#  0. tls.ktls = "on" on a kernel without kernel TLS (the kfeat hook) refuses
#     to start, saying what to change.
#  1. tls.ktls = "on": the 129 captures relayed byte-identical over TLS 1.3
#     (AES-128-GCM) and over TLS 1.2 (ECDHE-ECDSA-AES256-GCM), one kept-alive
#     connection each, every one carried by kernel TLS in both directions.
#  2. 100 MB both ways (a download, a SendMail upload) byte-exact over kTLS
#     with bodies moved by splice (relay_method = "splice"); then 8 MB both
#     ways with TLS 1.3 ChaCha20, TLS 1.3 AES-256-GCM, TLS 1.2 ChaCha20.
#  3. openssl s_client and gnutls-cli (TLS 1.3 and 1.2) as clients; resumed
#     sessions (TLS 1.3 and 1.2) too.
#  4. A KeyUpdate mid-stream (s_client's "K"): the answer before it arrived,
#     then the gateway ends the connection cleanly with a logged reason, and
#     serves the next connection.
#  5. tls.ktls = "off": no connection goes to the kernel; status says why.
#     tls.ktls = "auto": status gives the measured costs and the choice.
source "$(dirname "$0")/lib.sh"
need python3 curl openssl gnutls-cli ss sha256sum
make_pki
CAP=$EG_ROOT/tests/data/eas-captures
EAS=/Microsoft-Server-ActiveSync
Q="$EAS?Cmd=Sync&User=alice&DeviceId=KtlsDev1&DeviceType=iPhone"
PW='S3cr3t-ktls-pw'

tlsstat() { awk -v k="$1" '$1 == k {print $2}' /proc/net/tls_stat 2>/dev/null; }
feature() { "$EASCTL" -s "$CTL" status | sed -n "s/^feature $1 //p"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
hdr() { tr -d '\r' <"$1" | awk -F': ' -v n="$2" 'tolower($1)==n {print $2; exit}'; }
stop_gateway() {
	kill -TERM "$GW_PID" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$GW_PID" 2>/dev/null
}
# carried LABEL CMD...: CMD succeeds and the kernel opened exactly one more
# TLS RX and TX context (one connection, both directions kTLS).
carried() {
	local label=$1 rx tx
	shift
	rx=$(tlsstat TlsRxSw) tx=$(tlsstat TlsTxSw)
	"$@" || { fail "$label: the client failed"; return 1; }
	check "$label: kernel TLS carried it, both directions (TlsRxSw +$(($(tlsstat TlsRxSw) - rx)), TlsTxSw +$(($(tlsstat TlsTxSw) - tx)))" \
		test "$(($(tlsstat TlsRxSw) - rx))$(($(tlsstat TlsTxSw) - tx))" = 11
}

# ---- 0. demanded on a kernel without it ---------------------------------------------------
printf 'tls = { ktls = "on"; };\n' >"$T/on.conf"
GW_PORT=$(free_port)
EASGATE_TEST_KFEAT_OFF=ktls timeout 30 "$EASGATED" --listen "127.0.0.1:$GW_PORT" \
	--tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" --trust-file "$PKI/root.pem" --state-dir "$T/state0" \
	--control-socket "$T/ctl0.sock" -w 1 -c "$T/on.conf" >"$T/refused.log" 2>&1
rc=$?
check "tls.ktls = on without kernel TLS: refuses to start (status $rc)" test $rc -ne 0 -a $rc -ne 124
check "...saying what to change" grep -q 'event=ktls_unavailable .*fix=.*tls.ktls = \\"auto\\"' "$T/refused.log"

oracle=$(python3 "$EG_ROOT/tests/integration/ktls_oracle.py") || { fail "ktls_oracle.py could not run"; finish; }
case $oracle in
none*)
	echo "  (kernel $(uname -r): ${oracle#none })"
	[ "$EG_FAILS" -eq 0 ] || finish
	skip "kernel $(uname -r) has no kernel TLS (${oracle#none }); the kernel matrix runs the rest on 6.1 and 6.12" ;;
esac
[ -r /proc/net/tls_stat ] || { fail "/proc/net/tls_stat missing on a kernel with TLS"; finish; }

# ---- 1. the captures, TLS 1.3 and 1.2 ------------------------------------------------------
start_backend cas1 --record "$T/rec" || finish
printf 'tls = { ktls = "on"; };\nrelay_method = "splice";\nlog_level = "debug";\n' >"$T/gw.conf"
start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend up"
check "status: ktls on and used ($(feature ktls))" grep -q '^on ciphers=.* note="used for phone connections: tls.ktls = on' <<<"$(feature ktls)"
check "status: relay tls_legs=kernel" grep -q '^relay tls_legs=kernel ' <<<"$("$EASCTL" -s "$CTL" status)"

files=("$CAP"/*.http) # sorted by the glob; no /dev/fd in the guests for <(...)
total=${#files[@]}
replay() { # LABEL [tlsreplay options]
	local label=$1
	shift
	python3 "$EG_ROOT/tests/integration/tlsreplay.py" --port "$GW_PORT" --cafile "$PKI/root.pem" \
		--mode keepalive "$@" "${files[@]}" >"$T/out-$label.jsonl"
}
compare() { # LABEL -> number of captures the backend received byte-identical
	python3 - "$T/out-$1.jsonl" "$T/rec" <<'PY'
import json, os, sys
ident = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    sent = open(r["file"], "rb").read()
    seq = r["headers"].get("x-request-seq")
    if not seq:
        print("no backend seq for", r["file"], r["status"], file=sys.stderr)
        continue
    got = open(os.path.join(sys.argv[2], seq + ".req"), "rb").read()
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    added = [l for l in lines if l.startswith((b"X-Forwarded-For: ", b"X-Forwarded-Proto: "))]
    kept = [l for l in lines if l not in added]
    if b"\r\n".join(kept) + b"\r\n\r\n" + body == sent and b"X-Forwarded-Proto: https" in added and len(added) == 2:
        ident += 1
    else:
        print("DIFF", r["file"], file=sys.stderr)
print(ident)
PY
}
carried "captures, TLS 1.3" replay tls13
n=$(compare tls13) || fail "compare tls13 exited $?"
check "TLS 1.3: $n of $total captures reach the backend byte-identical" test "$n" = "$total"
check "...the connection was TLS 1.3 AES-128-GCM in the kernel" grep -q 'event=ktls client=127.0.0.1 version=1.3 cipher=aes-gcm-128' "$T/gw.log"
carried "captures, TLS 1.2" replay tls12 --tls12 --ciphers ECDHE-ECDSA-AES256-GCM-SHA384
n=$(compare tls12) || fail "compare tls12 exited $?"
check "TLS 1.2: $n of $total captures reach the backend byte-identical" test "$n" = "$total"
check "...the connection was TLS 1.2 AES-256-GCM in the kernel" grep -q 'event=ktls client=127.0.0.1 version=1.2 cipher=aes-gcm-256' "$T/gw.log"

# ---- 2. big bodies both ways, by splice --------------------------------------------------------
spliced() { "$EASCTL" -s "$CTL" metrics | awk '$1 == "easgate_relay_spliced_bytes_total" {print $2}'; }
# both_ways LABEL BYTES [curl TLS options]: a download and an upload of BYTES
both_ways() {
	local label=$1 size=$2 want s0
	shift 2
	want=$(curl -sS -X POST -d '' "http://127.0.0.1:$BE_PORT_cas1$Q&egtest_size=$size" | sha256sum | cut -d' ' -f1)
	s0=$(spliced)
	carried "$label download" bash -c 'curl -sS --cacert "$1" --max-time 600 -u "$2" -X POST -d "" "${@:5}" "$3" | sha256sum | cut -d" " -f1 >"$4"' \
		_ "$PKI/root.pem" "alice:$PW" "$(GWURL "$Q&egtest_size=$size")" "$T/sha-$label" "$@"
	check "$label: $size-byte answer byte-exact" test "$(cat "$T/sha-$label")" = "$want"
	head -c "$size" /dev/urandom >"$T/up"
	carried "$label upload" eas -X POST -o /dev/null -D "$T/h-$label" --max-time 600 -u "alice:$PW" "$@" \
		-H 'Content-Type: message/rfc822' --data-binary "@$T/up" \
		"$(GWURL "$EAS?Cmd=SendMail&User=alice&DeviceId=KtlsDev1&DeviceType=iPhone&SaveInSent=T")"
	check "$label: $size-byte upload arrives whole (backend SHA-256)" test "$(hdr "$T/h-$label" x-echo-body-sha256)" = "$(sha "$T/up")"
	# all but what came with the head, or before the splice began
	check "$label: both bodies moved by splice ($(($(spliced) - s0)) bytes)" test $(($(spliced) - s0)) -ge $((2 * size * 99 / 100))
	rm -f "$T/up"
}
both_ways "TLS 1.3 AES-128-GCM" 100000000
both_ways "TLS 1.3 ChaCha20" 8000000 --tls13-ciphers TLS_CHACHA20_POLY1305_SHA256
both_ways "TLS 1.3 AES-256-GCM" 8000000 --tls13-ciphers TLS_AES_256_GCM_SHA384
both_ways "TLS 1.2 ChaCha20" 8000000 --tls-max 1.2 --ciphers ECDHE-ECDSA-CHACHA20-POLY1305
for c in "1.3 chacha20-poly1305" "1.3 aes-gcm-256" "1.2 chacha20-poly1305"; do
	check "...TLS ${c% *} ${c#* } in the kernel" grep -q "event=ktls client=127.0.0.1 version=${c% *} cipher=${c#* }" "$T/gw.log"
done

# ---- 3. other clients ---------------------------------------------------------------------------
printf 'OPTIONS %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\nConnection: %s\r\n\r\n' \
	"$EAS" "$(printf 'alice:%s' "$PW" | base64)" close >"$T/req"
# talk OUT CMD...: the request on CMD's input, which stays open until CMD
# ends by itself (the gateway closes after the answer), 30 s at most.
talk() {
	local out=$1 pid
	shift
	rm -f "$T/talk.in"
	mkfifo "$T/talk.in" || return 1
	"$@" <"$T/talk.in" >"$out" 2>"$out.err" &
	pid=$!
	exec 8>"$T/talk.in"
	cat "$T/req" >&8
	for _ in $(seq 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
	exec 8>&-
	wait $pid
}
s_client() { talk "$T/sc.out" timeout 60 openssl s_client -quiet -connect "127.0.0.1:$GW_PORT" \
	-CAfile "$PKI/root.pem" -verify_return_error "$@"; }
gnutls() { talk "$T/gc.out" timeout 60 gnutls-cli --logfile="$T/gc.info" --x509cafile "$PKI/root.pem" \
	-p "$GW_PORT" "$@" localhost; }
carried "openssl s_client TLS 1.3" s_client -tls1_3
check "...answered 200 with the backend's OPTIONS headers" grep -q 'MS-ASProtocolVersions' "$T/sc.out"
carried "openssl s_client TLS 1.2" s_client -tls1_2
check "...answered 200 with the backend's OPTIONS headers" grep -q 'MS-ASProtocolVersions' "$T/sc.out"
carried "gnutls-cli TLS 1.3" gnutls --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3'
check "...answered with the backend's OPTIONS headers" grep -q 'MS-ASProtocolVersions' "$T/gc.out"
carried "gnutls-cli TLS 1.2" gnutls --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.2'
check "...answered with the backend's OPTIONS headers" grep -q 'MS-ASProtocolVersions' "$T/gc.out"

# Resumed sessions (a ticket from the first connection): the sequence numbers
# after an abbreviated handshake (TLS 1.2) and after the resumption's fresh
# ticket (TLS 1.3) are what the kernel must start from.
resumed() { "$EASCTL" -s "$CTL" metrics | sed -n 's/^easgate_tls_handshakes_total{resumed="true"} //p'; }
for v in 1_3 1_2; do
	rm -f "$T/sess"
	s_client -tls$v -sess_out "$T/sess" || fail "TLS ${v/_/.}: first connection"
	r0=$(resumed)
	carried "openssl s_client TLS ${v/_/.} resumed" s_client -tls$v -sess_in "$T/sess"
	check "...answered" grep -q 'MS-ASProtocolVersions' "$T/sc.out"
	check "...and it was a resumption (resumed handshakes +$(($(resumed) - r0)))" test $(($(resumed) - r0)) -eq 1
done

# ---- 4. KeyUpdate mid-stream --------------------------------------------------------------------
# s_client reads commands from its input: a line "K" sends a KeyUpdate
# asking for ours too. The request first, its answer awaited, then K.
mkfifo "$T/sc.in"
timeout 60 openssl s_client -connect "127.0.0.1:$GW_PORT" -CAfile "$PKI/root.pem" -tls1_3 \
	<"$T/sc.in" >"$T/ku.out" 2>"$T/ku.err" &
scpid=$!
exec 7>"$T/sc.in"
sed 's/^Connection: close/Connection: keep-alive/' "$T/req" >&7
for _ in $(seq 200); do grep -q 'MS-ASProtocolVersions' "$T/ku.out" && break; sleep 0.1; done
check "KeyUpdate: the request before it was answered" grep -q 'MS-ASProtocolVersions' "$T/ku.out"
printf 'K\n' >&7
for _ in $(seq 200); do kill -0 $scpid 2>/dev/null || break; sleep 0.1; done
check "KeyUpdate: the gateway ended the connection (s_client exited by itself)" test -z "$(kill -0 $scpid 2>/dev/null && echo alive)"
exec 7>&-
wait $scpid 2>/dev/null
check "KeyUpdate: s_client sent it (said KEYUPDATE)" grep -q 'KEYUPDATE' "$T/ku.out" "$T/ku.err"
check "KeyUpdate: the reason is logged" grep -q 'event=ktls_close client=127.0.0.1 reason="TLS 1.3 KeyUpdate from the phone: kernel TLS here cannot take new keys"' "$T/gw.log"
carried "after the KeyUpdate, the next connection" s_client -tls1_3
check "...answered" grep -q 'MS-ASProtocolVersions' "$T/sc.out"
check "no worker died" lacks -q 'event=worker_exit' "$T/gw.log"
check "SIGTERM" stop_gateway

# ---- 5. off, and auto --------------------------------------------------------------------------
printf 'tls = { ktls = "off"; };\n' >"$T/off.conf"
GW_PORT=$(free_port)
start_gateway -c "$T/off.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
check "off: status says not used, and why ($(feature ktls))" grep -q 'note="not used: tls.ktls = off' <<<"$(feature ktls)"
rx=$(tlsstat TlsRxSw)
s_client -tls1_3 || fail "off: s_client"
check "off: answered by OpenSSL in user space" grep -q 'MS-ASProtocolVersions' "$T/sc.out"
check "off: the kernel carried nothing (TlsRxSw unchanged)" test "$(tlsstat TlsRxSw)" = "$rx"
check "SIGTERM" stop_gateway
printf 'tls = { ktls = "auto"; };\n' >"$T/auto.conf"
GW_PORT=$(free_port)
start_gateway -c "$T/auto.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
check "auto: status gives the measured costs and the choice ($(feature ktls))" \
	grep -qE 'note="(used for phone connections|not used, not cheaper here): tls.ktls = auto, measured kernel [0-9.]+ vs OpenSSL [0-9.]+ CPU s/GB' <<<"$(feature ktls)"
check "auto: the start log has the measurement" grep -qE 'event=ktls_cost user_s_per_gb=[0-9.]+ kernel_s_per_gb=[0-9.]+' "$T/gw.log"
s_client -tls1_3 || fail "auto: s_client"
check "auto: answered" grep -q 'MS-ASProtocolVersions' "$T/sc.out"
finish
