#!/usr/bin/env bash
# The relay through the real daemon over TLS, against the demo backend:
#  - WBXML bodies made by libwbxml's xml2wbxml (Sync, FolderSync, Settings)
#    arrive byte-identical; 50 requests share one TLS handshake;
#  - chunked request bodies keep their framing on the wire (extensions,
#    trailers); Expect: 100-continue gets the gateway's 100 and the body;
#  - a 200 MB answer (Content-Length and chunked) and a 100 MB upload stream
#    byte-exact with the worker's RSS growing by less than 20 MB;
#  - a SOGo-like backend that closes every kept-alive connection without
#    saying so: 20 requests on one phone connection, none lost, none replayed,
#    with reuse = "safe" and with reuse = "never";
#  - 204, 304 and HEAD answers keep the connection's framing; a backend that
#    dies mid-body gets the phone's connection closed, not left hanging;
#  - X-Forwarded-For/-Proto set (a client's own replaced), hop-by-hop headers
#    dropped; one access-log line per request with no credentials in it;
#  - timeouts: a Ping held 5 s by the backend is answered, an idle phone
#    connection is closed after timeouts.idle (2 s here).
source "$(dirname "$0")/lib.sh"
need python3 curl xml2wbxml sha256sum bc
make_pki
REL=$EG_ROOT/tests/integration/relay
EAS=/Microsoft-Server-ActiveSync
Q="$EAS?Cmd=Sync&User=alice&DeviceId=RelayDev1&DeviceType=iPhone"
PW='S3cr3t-relay-pw'
CRED=$(printf 'alice:%s' "$PW" | base64)

sha() { sha256sum "$1" | cut -d' ' -f1; }
hdr() { tr -d '\r' <"$1" | awk -F': ' -v n="$2" 'tolower($1)==n {print $2; exit}'; }
meta() { awk -F= -v k="$2" '$1==k {print substr($0, length(k) + 2); exit}' "$T/rec/$1.meta"; }
restart_gateway() {
	kill "$GW_PID" 2>/dev/null
	wait "$GW_PID" 2>/dev/null
	unset GW_PORT
	start_gateway "$@"
}
workers_of_gw() { cat "/proc/$GW_PID/task/$GW_PID/children" 2>/dev/null; }
handshakes() {
	"$EASCTL" -s "$CTL" metrics | awk '/^easgate_tls_handshakes_total/ {n += $2} END {print n + 0}'
}

# ================= gateway A: recording backend, 2 s idle timeout =================
start_backend cas1 --record "$T/rec" --hold-ping-ms 5000 || finish
cat >"$T/gw-a.conf" <<'EOF'
timeouts = { idle = 2; };
EOF
start_gateway -c "$T/gw-a.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend never came up"

# --- timeouts, in the background while the rest runs ---------------------------------
(
	t0=$(date +%s.%N)
	code=$(eas -X POST -d '' -o /dev/null -w '%{http_code}' -u "alice:$PW" \
		"$(GWURL "$EAS?Cmd=Ping&User=alice&DeviceId=RelayDev1&DeviceType=iPhone")")
	echo "$code $(echo "$(date +%s.%N) - $t0" | bc)" >"$T/ping.out"
) &
ping_job=$!
printf 'POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n' "$Q&idle=1" >"$T/idle.req"
python3 "$REL/rawtls.py" --port "$GW_PORT" --cafile "$PKI/root.pem" --wait 8 "$T/idle.req" >"$T/idle.out" &
idle_job=$!
sleep 1
"$EASCTL" -s "$CTL" metrics >"$T/metrics-ping"

# --- WBXML bodies from libwbxml ------------------------------------------------------
dtd='<!DOCTYPE ActiveSync PUBLIC "-//MICROSOFT//DTD ActiveSync//EN" "http://www.microsoft.com/">'
cat >"$T/Sync.xml" <<EOF
<?xml version="1.0" encoding="utf-8"?>
$dtd
<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>1</SyncKey><CollectionId>1</CollectionId><GetChanges>1</GetChanges><WindowSize>50</WindowSize></Collection></Collections></Sync>
EOF
cat >"$T/FolderSync.xml" <<EOF
<?xml version="1.0" encoding="utf-8"?>
$dtd
<FolderSync xmlns="FolderHierarchy:"><SyncKey>0</SyncKey></FolderSync>
EOF
cat >"$T/Settings.xml" <<EOF
<?xml version="1.0" encoding="utf-8"?>
$dtd
<Settings xmlns="Settings:"><DeviceInformation><Set><Model>iPhone12C1</Model><OS>iOS 17.4.1 21E236</OS><OSLanguage>en</OSLanguage><FriendlyName>Relay test</FriendlyName><UserAgent>Apple-iPhone12C1/2104.236</UserAgent></Set></DeviceInformation></Settings>
EOF
for cmd in Sync FolderSync Settings; do
	wbxml_from_xml "$T/$cmd.xml" "$T/$cmd.wbxml" || { fail "xml2wbxml could not encode $cmd"; continue; }
	code=$(eas -o /dev/null -D "$T/h-$cmd" -w '%{http_code}' -u "alice:$PW" \
		-H 'Content-Type: application/vnd.ms-sync.wbxml' -H 'MS-ASProtocolVersion: 16.1' \
		--data-binary "@$T/$cmd.wbxml" "$(GWURL "$EAS?Cmd=$cmd&User=alice&DeviceId=RelayDev1&DeviceType=iPhone")")
	seq=$(hdr "$T/h-$cmd" x-request-seq)
	check "$cmd ($(stat -c %s "$T/$cmd.wbxml") bytes of WBXML): 200, backend body SHA-256 equals the file's (got $code)" \
		test "$code" = 200 -a "$(hdr "$T/h-$cmd" x-echo-body-sha256)" = "$(sha "$T/$cmd.wbxml")"
	check "$cmd: the recorded request body is the file, byte for byte" \
		cmp -s <(python3 -c 'import sys; sys.stdout.buffer.write(open(sys.argv[1], "rb").read().split(b"\r\n\r\n", 1)[1])' \
			"$T/rec/$seq.req") "$T/$cmd.wbxml"
done

# --- keep-alive: 50 requests, one handshake -------------------------------------------
h0=$(handshakes)
args=()
for i in $(seq 50); do args+=(-o /dev/null "$(GWURL "$Q&ka=$i")"); done
eas -X POST -d '' -u "alice:$PW" -w '%{http_code} %{num_connects}\n' "${args[@]}" >"$T/ka.out"
h1=$(handshakes)
check "keep-alive: 50 requests answered 200 ($(grep -c '^200 ' "$T/ka.out"))" test "$(grep -c '^200 ' "$T/ka.out")" -eq 50
check "keep-alive: one connection, one TLS handshake (curl connects: $(awk '{n += $2} END {print n}' "$T/ka.out"), handshakes +$((h1 - h0)))" \
	test "$(awk '{n += $2} END {print n}' "$T/ka.out")" -eq 1 -a $((h1 - h0)) -eq 1

# --- chunked request bodies ------------------------------------------------------------
head -c 300000 /dev/urandom >"$T/up-300k"
eas -o /dev/null -D "$T/h-chunked" -u "alice:$PW" -H 'Transfer-Encoding: chunked' \
	--data-binary "@$T/up-300k" "$(GWURL "$Q&chunked=curl")"
seq=$(hdr "$T/h-chunked" x-request-seq)
check "chunked upload (curl, 300 kB): backend body SHA-256 matches" \
	test "$(hdr "$T/h-chunked" x-echo-body-sha256)" = "$(sha "$T/up-300k")"
check "...and it arrived chunked (recorded chunked=$(meta "$seq" chunked))" test "$(meta "$seq" chunked)" = 1
# Hand-made framing: odd sizes, upper-case hex, an extension, a trailer.
{
	printf 'POST %s HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n' "$Q&chunked=raw"
	printf '5\r\nhello\r\n1A;ext=1\r\n%s\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n' "abcdefghijklmnopqrstuvwxyz"
} >"$T/chunked.req"
python3 "$EG_ROOT/tests/integration/tlsreplay.py" --port "$GW_PORT" --cafile "$PKI/root.pem" \
	"$T/chunked.req" >"$T/chunked.out"
seq=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["headers"].get("x-request-seq", ""))' "$T/chunked.out")
check "hand-made chunked body (extension, trailer) recorded with its framing byte for byte" \
	cmp -s <(python3 -c 'import sys; sys.stdout.buffer.write(open(sys.argv[1], "rb").read().split(b"\r\n\r\n", 1)[1])' "$T/rec/$seq.req") \
	<(python3 -c 'import sys; sys.stdout.buffer.write(open(sys.argv[1], "rb").read().split(b"\r\n\r\n", 1)[1])' "$T/chunked.req")

# --- Expect: 100-continue -------------------------------------------------------------
head -c 2000000 /dev/urandom >"$T/up-2m"
# curl waits up to 30 s for the 100 before sending anyway: a prompt answer
# within --max-time 20 means the gateway sent it.
eas -v -o /dev/null -D "$T/h-expect" -u "alice:$PW" -H 'Expect: 100-continue' --expect100-timeout 30 \
	--data-binary "@$T/up-2m" "$(GWURL "$Q&expect=1")" 2>"$T/expect.trace"
seq=$(hdr "$T/h-expect" x-request-seq)
check "Expect: 100-continue: the gateway answered 100 Continue" grep -q '^< HTTP/1.1 100' "$T/expect.trace"
check "...then curl sent the 2 MB body and the backend got it whole" \
	test -n "$seq" -a "$(hdr "$T/h-expect" x-echo-body-sha256)" = "$(sha "$T/up-2m")"
check "...without the Expect header (the gateway answered it)" \
	bash -c '[ -s "$0" ] && ! head -c 4096 "$0" | grep -qai "^Expect:"' "$T/rec/$seq.req"

# --- 204, 304, HEAD keep the framing on one connection -----------------------------
printf 'POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n' "$Q&egtest_status=204" >"$T/r204"
printf 'POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n' "$Q&egtest_status=304" >"$T/r304"
printf 'HEAD /autodiscover/autodiscover.xml?egtest_size=100 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\n\r\n' "$CRED" >"$T/rhead"
printf 'POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n' "$Q&egtest_size=5000" >"$T/r200"
python3 "$EG_ROOT/tests/integration/tlsreplay.py" --port "$GW_PORT" --cafile "$PKI/root.pem" \
	"$T/r204" "$T/r304" "$T/rhead" "$T/r200" "$T/r204" >"$T/nobody.out"
got=$(python3 -c 'import json,sys
rs = [json.loads(l) for l in open(sys.argv[1])]
print(" ".join("%s:%s" % (r["status"], r.get("body_len", "-")) for r in rs))' "$T/nobody.out")
check "204, 304, HEAD (404 + Content-Length, no body), 5000-byte 200, 204 on one connection ($got)" \
	test "$got" = "204:0 304:0 404:0 200:5000 204:0"
check "...all on one connection (no Connection: close, no reconnect)" \
	lacks -qi '"connection": "close"' "$T/nobody.out"

# --- forwarded headers, hop-by-hop headers -------------------------------------------
printf '%s\r\n' "POST $Q&fwd=1 HTTP/1.1" "Host: localhost" "X-Forwarded-For: 203.0.113.66" \
	"X-Forwarded-Proto: http" "Connection: Foo, keep-alive" "Foo: bar" "Keep-Alive: timeout=5" \
	"TE: trailers" "Upgrade: h2c" "Proxy-Connection: keep-alive" "X-Kept: yes" \
	"Content-Length: 0" "" >"$T/fwd.req"
python3 "$EG_ROOT/tests/integration/tlsreplay.py" --port "$GW_PORT" --cafile "$PKI/root.pem" \
	"$T/fwd.req" >"$T/fwd.out"
seq=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["headers"].get("x-request-seq", ""))' "$T/fwd.out")
tr -d '\r' <"$T/rec/$seq.req" | sed '/^$/q' >"$T/fwd.head"
check "X-Forwarded-For is the client address, once (the client's own replaced)" \
	test "$(grep -ci '^X-Forwarded-For:' "$T/fwd.head")" -eq 1 -a "$(hdr "$T/fwd.head" x-forwarded-for)" = 127.0.0.1
check "X-Forwarded-Proto: https, once" \
	test "$(grep -ci '^X-Forwarded-Proto:' "$T/fwd.head")" -eq 1 -a "$(hdr "$T/fwd.head" x-forwarded-proto)" = https
for h in Connection Foo Keep-Alive TE Upgrade Proxy-Connection; do
	check "hop-by-hop '$h' not forwarded" lacks -qi "^$h:" "$T/fwd.head"
done
check "an end-to-end header is kept (X-Kept)" grep -q '^X-Kept: yes$' "$T/fwd.head"

# --- timeouts (started at the top) ----------------------------------------------------
wait "$ping_job" "$idle_job"
read -r pcode psecs <"$T/ping.out"
check "Ping held 5 s by the backend is answered 200 after ${psecs} s (longer than the 2 s idle timeout)" \
	bash -c '[ "$0" = 200 ] && [ "$(echo "$1 >= 4.5" | bc)" = 1 ]' "$pcode" "$psecs"
check "...and counted as a long poll while held" grep -q '^easgate_long_polls 1$' "$T/metrics-ping"
read -r istat iclosed isecs < <(python3 -c 'import json,sys; r = json.load(open(sys.argv[1]))
idle = round(r["close_s"] - r["last_rx_s"], 3) if r["closed"] and r["last_rx_s"] else None
print(",".join(map(str, r["statuses"])), r["closed"], idle)' "$T/idle.out")
check "idle connection closed by the gateway ${isecs} s after its answer (timeouts.idle = 2)" \
	bash -c '[ "$0" = 200 ] && [ "$1" = True ] && [ "$(echo "$2 >= 1.8 && $2 <= 4" | bc)" = 1 ]' \
	"$istat" "$iclosed" "$isecs"

# --- access log ---------------------------------------------------------------------
n_access=$(grep -c 'event=access' "$T/gw.log")
n_rec=$(grep -l '^target=/\(Microsoft\|autodiscover\)' "$T/rec"/*.meta | wc -l)
# every request the backend answered, plus the readiness probe's 404 from start_gateway
check "one access-log line per request ($n_access lines, $n_rec relayed + 1 local)" \
	test "$n_access" -eq $((n_rec + 1))
line=$(grep 'event=access' "$T/gw.log" | grep 'cmd=FolderSync' | head -1)
for f in 'user="alice"' 'device="RelayDev1"' 'type="iPhone"' 'cmd=FolderSync' 'backend=cas1' \
	'status=200' 'bytes_in=[0-9]+' 'bytes_out=[0-9]+' 'dur_ms=[0-9.]+'; do
	check "access log has $f" grep -qE "(^| )$f( |$)" <<<"$line"
done

# ================= gateway B: big bodies, bounded memory =========================
start_backend big || finish
# Under ASan, freed memory sits in a quarantine (256 MB by default) before it
# is reused, so RSS would measure ASan, not the relay: turn it off here.
saved_asan=${ASAN_OPTIONS-}
grep -qa __asan_init "$EASGATED" && export ASAN_OPTIONS="${saved_asan:+$saved_asan:}quarantine_size_mb=0"
restart_gateway --backend "big=127.0.0.1:$BE_PORT_big,health=/health" || finish
if [ -n "$saved_asan" ]; then export ASAN_OPTIONS=$saved_asan; else unset ASAN_OPTIONS; fi
wait_backends_up big
workers=$(workers_of_gw)
# during NAME CMD... : run CMD while sampling every worker's RSS (kB) every 20 ms;
# sets GROWTH_KB to the largest growth of one worker over its level before.
during() {
	local name=$1 p
	shift
	rm -f "$T/stop"
	(
		while [ ! -e "$T/stop" ]; do
			for p in $workers; do echo "$p $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null)"; done
			sleep 0.02
		done
	) >"$T/rss-$name" &
	local sampler=$!
	sleep 0.1
	"$@"
	touch "$T/stop"
	wait "$sampler"
	GROWTH_KB=$(awk '!($1 in base) {base[$1] = $2} $2 - base[$1] > g {g = $2 - base[$1]} END {print g + 0}' "$T/rss-$name")
}
want=$(curl -sS -X POST -d '' "http://127.0.0.1:$BE_PORT_big$Q&egtest_size=200000000" | sha256sum | cut -d' ' -f1)
during clen bash -c 'curl -sS --cacert "$1" --max-time 60 -X POST -d "" "$2" | sha256sum | cut -d" " -f1 >"$3"' \
	_ "$PKI/root.pem" "$(GWURL "$Q&egtest_size=200000000")" "$T/sha-clen"
check "200 MB answer (Content-Length) byte-exact through the gateway" test "$(cat "$T/sha-clen")" = "$want"
check "...worker RSS grew by $((GROWTH_KB / 1024)) MB (< 20 MB)" test "$GROWTH_KB" -lt 20480
during chunked bash -c 'curl -sS --cacert "$1" --max-time 60 -X POST -d "" "$2" | sha256sum | cut -d" " -f1 >"$3"' \
	_ "$PKI/root.pem" "$(GWURL "$Q&egtest_size=200000000&egtest_chunked=1")" "$T/sha-chunked"
check "200 MB answer (chunked) byte-exact through the gateway" test "$(cat "$T/sha-chunked")" = "$want"
check "...worker RSS grew by $((GROWTH_KB / 1024)) MB (< 20 MB)" test "$GROWTH_KB" -lt 20480
head -c 100000000 /dev/urandom >"$T/up-100m"
during upload eas -X POST -o /dev/null -D "$T/h-upload" --max-time 60 -u "alice:$PW" \
	-H 'Content-Type: message/rfc822' --data-binary "@$T/up-100m" \
	"$(GWURL "$EAS?Cmd=SendMail&User=alice&DeviceId=RelayDev1&DeviceType=iPhone&SaveInSent=T")"
check "100 MB SendMail upload arrives whole (backend SHA-256 matches)" \
	test "$(hdr "$T/h-upload" x-echo-body-sha256)" = "$(sha "$T/up-100m")"
check "...worker RSS grew by $((GROWTH_KB / 1024)) MB (< 20 MB)" test "$GROWTH_KB" -lt 20480
rm -f "$T/up-100m"

# ================= gateway C: a backend that dies mid-body =======================
python3 "$REL/cutbackend.py" --port-file "$T/cut.port" --log "$T/cut.requests" >"$T/cut.log" 2>&1 &
EG_PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/cut.port" ] && break; sleep 0.05; done
restart_gateway --backend "cut=127.0.0.1:$(cat "$T/cut.port"),health=/health" || finish
wait_backends_up cut
for how in clen chunked; do
	printf 'POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n' "$Q&cut=$how" >"$T/cut-$how.req"
	read -r st cl secs < <(python3 "$REL/rawtls.py" --port "$GW_PORT" --cafile "$PKI/root.pem" --wait 10 \
		"$T/cut-$how.req" | python3 -c 'import json,sys; r = json.loads(sys.stdin.read())
print(",".join(map(str, r["statuses"])), r["closed"], r["close_s"])')
	check "backend closes mid-body ($how): the phone got the 200 head, then its connection closed after ${secs} s" \
		bash -c '[ "$0" = 200 ] && [ "$1" = True ] && [ "$(echo "$2 < 3" | bc)" = 1 ]' "$st" "$cl" "$secs"
done

# A kept-alive backend connection that its server ends 300 ms after answering,
# while the phone's next request is already on it: the request is never
# replayed by the gateway and never answered 502; the phone's connection is
# closed unanswered, as the server did, and the client retries on a new one.
eas -X POST -d 'x' -u "alice:$PW" -w '%{http_code} %{num_connects}\n' \
	-o /dev/null "$(GWURL "$Q&late_close=300&n=1")" -o /dev/null "$(GWURL "$Q&late_close=300&n=2")" \
	>"$T/late.out" 2>"$T/late.err"
sleep 0.5 # the backend logs the dropped copy when it closes
check "server ends a reused connection under our request: both answered 200 ($(xargs <"$T/late.out")), the second after a reconnect" \
	test "$(awk '$1==200' "$T/late.out" | wc -l)" -eq 2 -a "$(awk '{n += $2} END {print n}' "$T/late.out")" -eq 2
check "...the backend dropped the copy sent on the dying connection and answered the retry once" \
	test "$(grep -c '^dropped .*late_close=300&n=2 ' "$T/cut.requests")" -eq 1 -a \
	"$(grep -c '^answered .*late_close=300&n=2 ' "$T/cut.requests")" -eq 1
check "...the gateway logged it (no replay, phone connection closed)" \
	grep -q 'closed a reused connection.*action=close_client' "$T/gw.log"

# ================= gateway D: a SOGo-like backend ================================
# sogo_run LABEL [curl options] : 20 requests on one phone connection; prints
# "ok recorded distinct-markers connects".
sogo_run() {
	local label=$1 i
	shift
	local args=()
	for i in $(seq -w 20); do args+=(-o /dev/null "$(GWURL "$Q&run=$label&n=$i")"); done
	eas -X POST -d 'sogo' -u "alice:$PW" -w '%{http_code} %{num_connects}\n' "$@" "${args[@]}" >"$T/sogo-$label.out"
	sleep 0.2
	local rec
	rec=$(grep -l "^target=.*run=$label&" "$T/rec-sogo"/*.meta 2>/dev/null | wc -l)
	local markers
	markers=$(grep -h "^target=.*run=$label&" "$T/rec-sogo"/*.meta 2>/dev/null | sort -u | wc -l)
	echo "$(grep -c '^200 ' "$T/sogo-$label.out") $rec $markers $(awk '{n += $2} END {print n + 0}' "$T/sogo-$label.out")"
}
start_backend sogo --record "$T/rec-sogo" --close-after 1 || finish
restart_gateway --backend "sogo=127.0.0.1:$BE_PORT_sogo,health=/health" || finish # reuse = "safe"
wait_backends_up sogo
# A phone's requests are a network round trip apart at least: by then the
# backend's FIN is in and the gateway must not send on that connection.
# (200 ms leaves room for a loaded CI machine to schedule the backend.)
lost0=$(grep -c 'closed a reused connection' "$T/gw.log")
read -r ok rec markers conns < <(sogo_run spaced --rate 5/s)
lost=$(($(grep -c 'closed a reused connection' "$T/gw.log") - lost0))
check "reuse=safe, 20 requests 200 ms apart: all 200 ($ok), 20 recorded once each ($rec, $markers distinct)" \
	test "$ok" -eq 20 -a "$rec" -eq 20 -a "$markers" -eq 20
check "...the gateway never sent on a connection the backend had closed ($lost), one phone connection ($conns)" \
	test "$lost" -eq 0 -a "$conns" -eq 1
# Back to back, the backend's FIN can cross the next request. The gateway
# must neither replay it nor turn it into an error: it closes the phone's
# connection unanswered, as the backend did, and the client retries.
read -r ok rec markers conns < <(sogo_run b2b)
check "reuse=safe, 20 requests back to back: all 200 ($ok), 20 recorded once each ($rec, $markers distinct; phone reconnected $((conns - 1)) times)" \
	test "$ok" -eq 20 -a "$rec" -eq 20 -a "$markers" -eq 20
check "...no 502 reached the phone" lacks -q "^502" "$T/sogo-b2b.out"
restart_gateway --backend "sogo=127.0.0.1:$BE_PORT_sogo,health=/health,reuse=never" || finish
wait_backends_up sogo
read -r ok rec markers conns < <(sogo_run never)
check "reuse=never, 20 requests back to back: all 200 ($ok), 20 recorded once each ($rec, $markers distinct), one phone connection ($conns)" \
	test "$ok" -eq 20 -a "$rec" -eq 20 -a "$markers" -eq 20 -a "$conns" -eq 1
nconn=$(grep -l '^target=.*run=never&' "$T/rec-sogo"/*.meta | xargs grep -h '^conn=' | sort -u | wc -l)
nclose=$(grep -l '^target=.*run=never&' "$T/rec-sogo"/*.meta | sed 's/\.meta$/.req/' |
	xargs grep -lai '^Connection: close' | wc -l)
check "...each on its own backend connection ($nconn) asking it to close ($nclose)" \
	test "$nconn" -eq 20 -a "$nclose" -eq 20

# --- no credentials in the gateway's log (all four gateways wrote to it) -----------
check "the backend did get the credentials (so their absence below means something)" \
	grep -qa "Authorization: Basic $CRED" "$T/rec"/*.req
check "the gateway log never holds the Basic credentials" lacks -qF "$CRED" "$T/gw.log"
check "...nor the password" lacks -qF "$PW" "$T/gw.log"
finish
