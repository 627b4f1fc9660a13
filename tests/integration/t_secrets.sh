#!/usr/bin/env bash
# Secrets in memory.
#  1. After authenticated requests (Basic: keep-alive Syncs with bodies, new
#     connections, a locally answered 404, a gzip'd Provision the gateway
#     inflates, a regex rule on each, and a connection still open
#     between requests), a core of each worker (gcore, as an operator or a
#     crash handler would take it) holds neither the password nor the base64
#     credential: the request head, the backend's copy and OpenSSL's record
#     buffers are wiped once the request is done with them.
#  2. The same for the private key: neither worker nor master core holds the
#     key's private scalar (either byte order) or its DER. And the master does
#     not read the key file again in the seconds after its start: it did, for
#     its hourly certificate check at its first tick, and OpenSSL 3.0's PEM
#     decoder frees two copies of the key's DER without wiping them (the
#     trust store loaded next usually overwrites them): a core of the master
#     in that window held the key (1 run in ~75).
#  3. A gateway started as an unprivileged user (as the systemd unit does:
#     no setuid, which would have made it non-dumpable by itself) turns dumps
#     off: /proc/PID/status of master and workers belongs to root (the
#     kernel's sign of a non-dumpable process), RLIMIT_CORE is 0, and a worker killed
#     with SIGABRT leaves no core file. Everything else still works: the
#     master respawns the worker and a phone syncs.
#  4. packaging/easgate.service sets LimitCORE=0.
#  5. A worker binds no symbol lazily, whatever a request goes through (a
#     regex rule: libpcre2; a gzip'd body read for DeviceInformation: zlib).
#     ld.so's lazy binding saves every vector register on the stack (~2.5
#     KiB with AVX-512, below the deepest frame of the request), and glibc's
#     string functions leave request bytes in them: that is how a worker's
#     core held the credential in 4 of 11 runs (a watchpoint on the copy
#     caught _dl_runtime_resolve_xsavec, at the first call of strnlen, from
#     policy.c). ld.so reports every binding it makes (LD_DEBUG=bindings).
source "$(dirname "$0")/lib.sh"
need_root
need gcore python3 curl openssl setpriv xml2wbxml gzip
make_pki
EAS=/Microsoft-Server-ActiveSync
PW="Zebra-$$-Quartz-$RANDOM-pw"
CRED=$(printf 'alice:%s' "$PW" | base64 -w0)
Q="$EAS?Cmd=Sync&User=alice&DeviceId=SecretDev1&DeviceType=iPhone"
# A Provision with DeviceInformation, gzip'd: the gateway inflates it (zlib)
# to read the model, which then shows in the inventory.
sed 's/MODELPLACEHOLDER1/SecretModel5/' "$EG_ROOT/tests/integration/identity/provision-di.xml" >"$T/prov.xml"
wbxml_from_xml "$T/prov.xml" "$T/prov.wbxml" && gzip -c "$T/prov.wbxml" >"$T/prov.gz" ||
	{ fail "xml2wbxml | gzip"; finish; }
provision_gz() {
	eas -u "alice:$PW" -X POST -H 'MS-ASProtocolVersion: 14.1' -H 'Content-Encoding: gzip' \
		-H 'Content-Type: application/vnd.ms-sync.wbxml' --data-binary "@$T/prov.gz" -o /dev/null \
		-w '%{http_code}' "$(GWURL "$EAS?Cmd=Provision&User=alice&DeviceId=SecretDev1&DeviceType=iPhone")"
}
inventory_has_model() { "$EASCTL" -s "$CTL" devices --format csv | grep -q ',SecretModel5,'; }
# A rule with a regex (libpcre2): never matches these requests, runs on each.
add_regex_rule() { "$EASCTL" -s "$CTL" rules add 'block UserAgent matches "^Apple.*1002.*"' >/dev/null; }

workers_of() { cat "/proc/$1/task/$1/children" 2>/dev/null; }
# gcore with a 1 GiB ceiling on the file: a core of this daemon is ~10 MiB;
# anything near the ceiling means reserved memory is being dumped (a
# sanitizer's shadow) and must not fill the disk.
take_core() { (ulimit -f 1048576 && exec gcore -o "$T/core" "$1") >"$T/gcore-$2.log" 2>&1; }
# Sanitizer builds reserve terabytes (ASan's shadow and allocator space):
# their cores say nothing about the product's memory.
SANITIZED=0
ldd "$EASGATED" 2>/dev/null | grep -q libasan && SANITIZED=1
# found FILE NEEDLE: how many times NEEDLE (a fixed string) occurs in FILE
found() { grep -c -a -F -e "$2" "$1"; }
# found_hex FILE HEX: occurrences of the bytes HEX in FILE
found_hex() { python3 -c 'import sys; print(open(sys.argv[1], "rb").read().count(bytes.fromhex(sys.argv[2])))' "$1" "$2"; }

# opens.py FILE SECONDS: how many times any process opens FILE in SECONDS
# (inotify); prints "watching" first, once the watch is set.
cat >"$T/opens.py" <<'EOF'
import ctypes, os, select, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
if fd < 0 or libc.inotify_add_watch(fd, sys.argv[1].encode(), 0x20) < 0:  # IN_OPEN
    sys.exit(2)
print("watching", flush=True)
end, n = time.monotonic() + float(sys.argv[2]), 0
while end - time.monotonic() > 0:
    if select.select([fd], [], [], max(0, end - time.monotonic()))[0]:
        n += len(os.read(fd, 4096)) // 16  # a watched file's events carry no name
print(n, flush=True)
EOF
start_backend cas1 --record "$T/rec" || finish
start_gateway --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
python3 "$T/opens.py" "$PKI/server.key" 3 >"$T/opens.out" 2>&1 &
OPENS=$!
for _ in $(seq 50); do grep -q watching "$T/opens.out" && break; sleep 0.05; done
wait_backends_up cas1 || fail "backend cas1 up"
check "a regex rule added" add_regex_rule

# ---- traffic --------------------------------------------------------------------------
head -c 300 /dev/urandom >"$T/body"
urls=()
for _ in $(seq 10); do urls+=(-o /dev/null "$(GWURL "$Q")"); done
out=$(eas -u "alice:$PW" -H 'MS-ASProtocolVersion: 14.1' -X POST --data-binary "@$T/body" \
	-w '%{http_code} ' "${urls[@]}")
check "10 keep-alive Syncs with Basic credentials and a body: all 200 ($out)" \
	test "$(tr ' ' '\n' <<<"$out" | grep -c '^200$')" = 10
ok=0
for _ in $(seq 5); do
	[ "$(eas -u "alice:$PW" -X POST -d '' -o /dev/null -w '%{http_code}' "$(GWURL "$Q")")" = 200 ] && ok=$((ok + 1))
done
check "5 more on new connections: all 200" test "$ok" = 5
code=$(eas -u "alice:$PW" -o /dev/null -w '%{http_code}' "$(GWURL /nowhere)")
check "a request the gateway answers itself (404)" test "$code" = 404
code=$(provision_gz)
check "a Provision with a gzip'd body: $code" test "$code" = 200
check "...inflated and read: its model is in the inventory" inventory_has_model
# A phone between requests: two requests done, the connection kept open.
cat >"$T/hold.py" <<'EOF'
import socket, ssl, sys, time
port, cafile, cred, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
for i in range(2):
    s.sendall(("POST %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\n"
               "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n" % (path, cred)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            sys.exit(1)
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    n = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(rest) < n:
        rest += s.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(1)
print("held", flush=True)
time.sleep(120)
EOF
python3 "$T/hold.py" "$GW_PORT" "$PKI/root.pem" "$CRED" "$Q" >"$T/hold.out" 2>&1 &
HOLD=$!
EG_PIDS+=($HOLD)
for _ in $(seq 100); do grep -q held "$T/hold.out" && break; sleep 0.1; done
check "a phone holds its connection open after 2 authenticated requests" grep -q held "$T/hold.out"
check "the backend got the credential (so it did pass through the workers)" \
	bash -c 'grep -lqF "Authorization: Basic $0" "$1"/*.req' "$CRED" "$T/rec"

# ---- 1. worker cores ---------------------------------------------------------------------
workers=$(workers_of "$GW_PID")
check "two workers ($(xargs <<<"$workers"))" test "$(wc -w <<<"$workers")" = 2
[ "$SANITIZED" = 1 ] && { echo "  note: sanitizer build: the core checks (1, 2) run on the release build"; workers=; }
for w in $workers; do
	take_core "$w" "$w"
	check "gcore of worker $w ($(du -m "$T/core.$w" 2>/dev/null | cut -f1) MiB)" test -s "$T/core.$w"
	n=$(found "$T/core.$w" "$PW")
	check "worker $w core: the password occurs $n times (want 0)" test "$n" = 0
	n=$(found "$T/core.$w" "$CRED")
	check "worker $w core: the base64 credential occurs $n times (want 0)" test "$n" = 0
done

# ---- 2. the private key ---------------------------------------------------------------------
wait "$OPENS"
rc=$?
n=$(tail -1 "$T/opens.out")
check "the master did not read its key again in the 3 s after its start (opens: $n, want 0)" \
	test "$rc" = 0 -a "$(head -1 "$T/opens.out")" = watching -a "$n" = 0
openssl pkey -in "$PKI/server.key" -outform DER -out "$T/key.der" 2>/dev/null
d=$(openssl pkey -in "$PKI/server.key" -text -noout 2>/dev/null |
	awk '/^priv:/ {f = 1; next} /^pub:/ {f = 0} f' | tr -d ' :\n')
check "the test key's private scalar is 32 bytes (${#d} hex digits)" test "${#d}" = 64
drev=$(sed 's/../& /g' <<<"$d" | tr ' ' '\n' | grep . | tac | tr -d '\n')
der=$(od -An -tx1 "$T/key.der" | tr -d ' \n')
if [ "$SANITIZED" = 0 ]; then
	take_core "$GW_PID" master
	check "gcore of the master" test -s "$T/core.$GW_PID"
fi
for p in $([ "$SANITIZED" = 0 ] && echo "$GW_PID") $workers; do
	n=$(($(found_hex "$T/core.$p" "$d") + $(found_hex "$T/core.$p" "$drev") + $(found_hex "$T/core.$p" "$der")))
	check "core of $p: the private key (scalar, reversed, DER) occurs $n times (want 0)" test "$n" = 0
done
kill "$HOLD" 2>/dev/null
rm -f "$T"/core.*
kill "$GW_PID"
wait "$GW_PID"

# ---- 3. started as an unprivileged user: no dumps ---------------------------------------------
NP=$T/np
mkdir -p "$NP/state" "$NP/cwd"
cp "$PKI/server.pem" "$PKI/server.key" "$PKI/root.pem" "$NP/"
chown -R 65534:65534 "$NP"
chmod 700 "$NP/cwd"
cp=$(cat /proc/sys/kernel/core_pattern)
GW_PORT=$(free_port)
(
	cd "$NP/cwd" || exit 1
	ulimit -c unlimited
	exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- \
		"$EASGATED" --listen "127.0.0.1:$GW_PORT" --tls-cert "$NP/server.pem" --tls-key "$NP/server.key" \
		--trust-file "$NP/root.pem" --state-dir "$NP/state" --control-socket "$NP/ctl.sock" -w 2 \
		--backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health"
) >>"$T/gw-np.log" 2>&1 &
NPID=$!
EG_PIDS+=($NPID)
up=0
for _ in $(seq 100); do
	[ "$(eas -u "alice:$PW" -X POST -d '' -o /dev/null -w '%{http_code}' "$(GWURL "$Q")" 2>/dev/null)" = 200 ] && { up=1; break; }
	sleep 0.1
done
check "unprivileged start: the gateway serves (uid $(awk '/^Uid:/ {print $2}' "/proc/$NPID/status"))" test "$up" = 1
workers=$(workers_of "$NPID")
for p in $NPID $workers; do
	check "/proc/$p/status belongs to root: not dumpable (owner uid $(stat -c %u "/proc/$p/status"))" \
		test "$(stat -c %u "/proc/$p/status")" = 0
	check "...RLIMIT_CORE of $p is 0" \
		bash -c "grep -q '^Max core file size *0 *' /proc/$p/limits"
done
w1=$(tr ' ' '\n' <<<"$workers" | grep . | head -1)
kill -ABRT "$w1"
for _ in $(seq 50); do kill -0 "$w1" 2>/dev/null || break; sleep 0.1; done
check "SIGABRT killed worker $w1" bash -c "! kill -0 $w1 2>/dev/null"
sleep 0.5
case $cp in
'|'* | /*) skip_part "the core file check" "core_pattern is '$cp', not a file in the cwd" ;;
*) check "...and left no core file (core_pattern '$cp')" bash -c '[ -d "$0" ] && [ -z "$(ls -A "$0")" ]' "$NP/cwd" ;;
esac
ok=0
for _ in $(seq 100); do
	[ "$(workers_of "$NPID" | wc -w)" = 2 ] &&
		[ "$(eas -u "alice:$PW" -X POST -d '' -o /dev/null -w '%{http_code}' "$(GWURL "$Q")" 2>/dev/null)" = 200 ] &&
		{ ok=1; break; }
	sleep 0.1
done
check "the master respawned it and phones sync" test "$ok" = 1
kill "$NPID"

# ---- 4. the unit ----------------------------------------------------------------------------
check "packaging/easgate.service: LimitCORE=0" grep -qx 'LimitCORE=0' "$EG_ROOT/packaging/easgate.service"

# ---- 5. nothing bound lazily in a worker --------------------------------------------------
rm -rf "$T/state" # a fresh inventory: the model must come from this gateway
GW_PORT=$(free_port)
LD_DEBUG=bindings LD_DEBUG_OUTPUT=$T/ld start_gateway --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend cas1 up (LD_DEBUG gateway)"
workers=$(workers_of "$GW_PID")
check "LD_DEBUG gateway: two workers ($(xargs <<<"$workers"))" test "$(wc -w <<<"$workers")" = 2
check "a regex rule added" add_regex_rule
urls=()
for _ in $(seq 10); do urls+=(-o /dev/null "$(GWURL "$Q")"); done
out=$(eas -u "alice:$PW" -H 'MS-ASProtocolVersion: 14.1' -X POST --data-binary "@$T/body" \
	-w '%{http_code} ' "${urls[@]}")
check "10 keep-alive Syncs with Basic credentials and a body: all 200 ($out)" \
	test "$(tr ' ' '\n' <<<"$out" | grep -c '^200$')" = 10
for _ in $(seq 4); do
	[ "$(provision_gz)" = 200 ] || fail "a gzip'd Provision"
done
check "gzip'd Provisions inflated and read (model in the inventory)" inventory_has_model
# ld.so writes to $T/ld.PID, each line prefixed with the pid that bound.
n=$(cat "$T"/ld.* | grep -c "^ *$GW_PID:.*binding file")
check "ld.so reports bindings (the master made $n before forking)" test "$n" -gt 0
for w in $workers; do
	n=$(cat "$T"/ld.* | grep -c "^ *$w:.*binding file")
	by=$(cat "$T"/ld.* | grep "^ *$w:.*binding file" | awk '{print $4}' | sed 's|.*/||' |
		sort | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}')
	check "worker $w bound $n symbols after its fork (want 0; by file: ${by:-none})" test "$n" = 0
done
kill "$GW_PID"
wait "$GW_PID"
finish
