#!/usr/bin/env bash
# Prometheus metrics (issue #5): after a scripted mix of allowed, blocked and
# quarantined requests, a scrape of /metrics (--metrics 127.0.0.1:PORT) shows
# exactly those counts:
#  - easgate_requests_total{command,status,verdict}: the change since a scrape
#    taken before the mix equals the mix, series by series, nothing else;
#  - easgate_backend_connections{backend}: 1 on the backend holding a Ping
#    long-poll while it is held (easgate_long_polls 1), 0 after;
#    easgate_backend_requests_total per backend = the X-Backend answers seen;
#  - easgate_devices{os_family,state}: the inventory (iOS/Android; Allowed,
#    Quarantined: the blocked phone never authenticated, it counts in
#    easgate_unauthenticated_devices);
#  - TLS: full and resumed handshakes, and one failed handshake, counted;
#  - the duration histogram: cumulative buckets, +Inf = _count = requests,
#    the 2 s long-poll alone above le="1";
#  - exposition format: HELP/TYPE for every family, counters end in _total,
#    Content-Type text/plain version=0.0.4, other paths 404;
#  - a scraper that connects and never sends delays neither requests nor
#    the master (easctl answers);
#  - hostile label values (a DeviceOS family, backend names and a certificate
#    path with '"', '\' and newlines) are escaped: promtool check metrics
#    passes on every scrape, and the values read back as they were written.
source "$(dirname "$0")/lib.sh"
need python3 curl openssl promtool xml2wbxml
make_pki
start_backend cas1 --hold-ping-ms 2000 || finish
start_backend cas2 --hold-ping-ms 2000 || finish
MPORT=$(free_port)
cat >"$T/gw.conf" <<'EOF'
policy = {
  rules = ( "block DeviceId is \"Blk1\"", "quarantine DeviceId is \"Qua1\"" );
};
EOF
start_gateway -c "$T/gw.conf" --metrics "127.0.0.1:$MPORT" \
	--backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" \
	--backend "cas2=127.0.0.1:$BE_PORT_cas2,health=/health" || finish
wait_backends_up cas1 cas2 || fail "backends not up"
scrape() { curl -sS --max-time 5 "http://127.0.0.1:$MPORT/metrics"; }

IOS='Apple-iPhone4C1/1002.142'
ANDROID='Android/4.4.2-EAS-1.3'
declare -A EXP # "command|status|verdict" -> count the scrape must show
: >"$T/backends.seen"
# req CMD DEVICE UA PROTO WANT_HTTP VERDICT: one EAS request on a new connection.
req() {
	local cmd=$1 dev=$2 ua=$3 proto=$4 want=$5 verdict=$6 code
	code=$(eas -o "$T/body" -D "$T/head" -w '%{http_code}' -u "user$dev:secret" -X POST \
		-H "MS-ASProtocolVersion: $proto" -H "User-Agent: $ua" \
		-H 'Content-Type: application/vnd.ms-sync.wbxml' --data-binary @/dev/null \
		"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=$cmd&User=user$dev&DeviceId=$dev&DeviceType=Phone")")
	[ "$code" = "$want" ] || fail "$cmd from $dev: HTTP $code, expected $want"
	awk 'tolower($1) == "x-backend:" { sub(/\r$/, "", $2); print $2 }' "$T/head" >>"$T/backends.seen"
	EXP["$cmd|$code|$verdict"]=$((${EXP["$cmd|$code|$verdict"]:-0} + 1))
	NREQ=$((NREQ + 1))
}
NREQ=0
scrape >"$T/before.prom" || fail "first scrape failed"

# The mix.
for _ in 1 2 3; do req Sync AllowA "$IOS" 14.1 200 allow; done
for _ in 1 2; do req FolderSync AllowA "$IOS" 14.1 200 allow; done
for _ in 1 2; do req Sync AllowB "$ANDROID" 14.1 200 allow; done
req GetItemEstimate AllowB "$ANDROID" 14.1 200 allow
for _ in 1 2 3; do req Sync Blk1 "$IOS" 14.1 200 block; done # EAS 129 in a 200
grep -q 129 "$T/body" || fail "blocked Sync did not carry EAS status 129"
req FolderSync Blk1 "$IOS" 12.1 403 block # 12.1 knows no 129: bare 403
for _ in 1 2; do req Sync Qua1 "$IOS" 14.1 200 quarantine; done # empty "no changes"
req FolderSync Qua1 "$IOS" 14.1 200 quarantine                  # let through to the backend
req MoveItems Qua1 "$IOS" 14.1 200 quarantine                   # EAS 130 in a 200
code=$(eas -o /dev/null -w '%{http_code}' "$(GWURL /not-eas)")
[ "$code" = 404 ] || fail "GET /not-eas: HTTP $code"
EXP["None|404|local"]=$((${EXP["None|404|local"]:-0} + 1))
NREQ=$((NREQ + 1))
check "the requests were answered as scripted (blocked: 129/403, quarantined: empty/130)" test "$EG_FAILS" -eq 0

# A Ping held 2 s by the backend: the gauges while it is held.
eas -o /dev/null -D "$T/ping.head" -u userPingDev:secret -X POST -H 'MS-ASProtocolVersion: 14.1' \
	-H "User-Agent: $IOS" -H 'Content-Type: application/vnd.ms-sync.wbxml' --data-binary @/dev/null \
	"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Ping&User=userPingDev&DeviceId=PingDev&DeviceType=Phone")" &
PING_PID=$!
for _ in $(seq 30); do scrape | grep -qx 'easgate_long_polls 1' && break; sleep 0.05; done
scrape >"$T/during.prom"
wait "$PING_PID"
ping_be=$(awk 'tolower($1) == "x-backend:" { sub(/\r$/, "", $2); print $2 }' "$T/ping.head")
echo "$ping_be" >>"$T/backends.seen"
EXP["Ping|200|allow"]=1
NREQ=$((NREQ + 1))

# TLS: one more full handshake with a ticket, one resumed, one failed (plain HTTP).
rm -f "$T/sess"
sleep 1 | timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -tls1_3 \
	-CAfile "$PKI/root.pem" -sess_out "$T/sess" >/dev/null 2>&1
resumed=$(sleep 1 | timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -tls1_3 \
	-CAfile "$PKI/root.pem" -sess_in "$T/sess" 2>&1 | grep -c '^Reused')
[ "$resumed" = 1 ] || fail "openssl did not resume its session"
curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$GW_PORT/" # not TLS: handshake fails
for _ in $(seq 40); do
	scrape >"$T/after.prom"
	grep -q '^easgate_devices{os_family="iOS",state="Quarantined"} 1$' "$T/after.prom" &&
		grep -q 'state="Allowed"} 1$' "$T/after.prom" && break
	sleep 0.1
done
sleep 0.3 # the failed handshake is counted when the worker gives up on it
scrape >"$T/after.prom"
{
	for k in "${!EXP[@]}"; do echo "$k ${EXP[$k]}"; done
} >"$T/expected"
sort "$T/backends.seen" | uniq -c >"$T/backends.count"

python3 - "$T/before.prom" "$T/during.prom" "$T/after.prom" "$T/expected" "$T/backends.count" \
	"$NREQ" "$ping_be" >"$T/verdicts" <<'PY'
import re, sys
before_f, during_f, after_f, exp_f, be_f, nreq, ping_be = sys.argv[1:8]
nreq = int(nreq)
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')

def parse(path):
    series, helps, types, bad = {}, set(), {}, []
    for ln in open(path):
        ln = ln.rstrip("\n")
        if ln.startswith("# HELP "):
            helps.add(ln.split()[2])
        elif ln.startswith("# TYPE "):
            types[ln.split()[2]] = ln.split()[3]
        elif ln:
            m = LINE.match(ln)
            if not m:
                bad.append(ln)
                continue
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(3) or "")))
            series[(m.group(1), labels)] = float(m.group(4))
    return series, helps, types, bad

b, _, _, _ = parse(before_f)
d, _, _, _ = parse(during_f)
a, helps, types, bad = parse(after_f)
out = []
def check(ok, desc):
    out.append(("ok" if ok else "bad") + "|" + desc)

def delta(name):
    keys = {k for k in a if k[0] == name} | {k for k in b if k[0] == name}
    return {k[1]: a.get(k, 0) - b.get(k, 0) for k in keys if a.get(k, 0) != b.get(k, 0)}

# requests_total: exactly the mix
exp = {}
for ln in open(exp_f):
    key, n = ln.split()
    c, s, v = key.split("|")
    exp[(("command", c), ("status", s), ("verdict", v))] = float(n)
got = delta("easgate_requests_total")
check(got == exp, "easgate_requests_total changed by exactly the mix (%d series, %d requests)"
      % (len(exp), sum(exp.values())))
if got != exp:
    for k in sorted(set(got) | set(exp)):
        if got.get(k, 0) != exp.get(k, 0):
            out.append("info|  %s: scrape %s, sent %s" % (dict(k), got.get(k, 0), exp.get(k, 0)))
for v in ("allow", "block", "quarantine"):
    n = sum(x for k, x in got.items() if ("verdict", v) in k)
    m = sum(x for k, x in exp.items() if ("verdict", v) in k)
    check(n == m, "verdict %s: %d requests counted, %d sent" % (v, n, m))

# backends
be_seen = {}
for ln in open(be_f):
    n, name = ln.split()
    be_seen[name] = float(n)
reqs = {dict(k)["backend"]: x for k, x in delta("easgate_backend_requests_total").items()}
check(reqs == be_seen, "easgate_backend_requests_total per backend = answers with that X-Backend %s"
      % be_seen)
conns = {dict(k[1])["backend"]: x for k, x in d.items() if k[0] == "easgate_backend_connections"}
check(conns.get(ping_be) == 1 and sum(conns.values()) == 1,
      "while the Ping is held: easgate_backend_connections{backend=\"%s\"} 1, others 0 (%s)"
      % (ping_be, conns))
check(d.get(("easgate_long_polls", ())) == 1 and d.get(("easgate_connections", ())) == 1,
      "while the Ping is held: easgate_long_polls 1, easgate_connections 1")
conns_after = [x for k, x in a.items() if k[0] == "easgate_backend_connections"]
check(conns_after and all(x == 0 for x in conns_after) and a.get(("easgate_long_polls", ())) == 0
      and a.get(("easgate_connections", ())) == 0,
      "afterwards: backend connections, long-polls and connections all 0")

# devices
dev = {tuple(v for _, v in k[1]): x for k, x in a.items() if k[0] == "easgate_devices"}
# Blk1, blocked from its first request, never reached the backend: it is no
# device (not authenticated), only a sighting.
want = {("iOS", "Allowed"): 2, ("Android", "Allowed"): 1, ("iOS", "Quarantined"): 1}
check(dev == want, "easgate_devices{os_family,state} = the inventory %s" % sorted(want.items()))
check(a.get(("easgate_unauthenticated_devices", ())) == 1
      and a.get(("easgate_unauthenticated_devices_capacity", ())) == 4096,
      "easgate_unauthenticated_devices 1 (the blocked Blk1) of 4096")
if dev != want:
    out.append("info|  scrape: %s" % sorted(dev.items()))

# TLS: one curl = one full handshake; + openssl full & resumed; + 1 failure
hs = delta("easgate_tls_handshakes_total")
full = hs.get((("resumed", "false"),), 0)
res = hs.get((("resumed", "true"),), 0)
check(full == nreq + 1 and res == 1, "TLS handshakes: %d full (%d expected), %d resumed (1)"
      % (full, nreq + 1, res))
fails = a.get(("easgate_tls_handshake_failures_total", ()), 0) - b.get(
    ("easgate_tls_handshake_failures_total", ()), 0)
check(fails == 1, "TLS handshake failures: %d (the plain-HTTP attempt: 1)" % fails)

# histogram
buckets = sorted(((float("inf") if dict(k[1])["le"] == "+Inf" else float(dict(k[1])["le"])), x)
                 for k, x in a.items() if k[0] == "easgate_request_duration_seconds_bucket")
vals = [x for _, x in buckets]
count = a.get(("easgate_request_duration_seconds_count", ()), -1)
total = sum(x for k, x in a.items() if k[0] == "easgate_requests_total")
check(len(buckets) > 2 and all(x <= y for x, y in zip(vals, vals[1:])),
      "histogram buckets are cumulative (%d buckets)" % len(buckets))
check(buckets and buckets[-1][0] == float("inf") and buckets[-1][1] == count == total,
      "+Inf bucket = _count = sum of easgate_requests_total (%d)" % total)
db = {le: x - dict(((float("inf") if dict(k[1])["le"] == "+Inf" else float(dict(k[1])["le"])), y)
                   for k, y in b.items() if k[0] == "easgate_request_duration_seconds_bucket").get(le, 0)
      for le, x in buckets}
dcount = count - b.get(("easgate_request_duration_seconds_count", ()), 0)
dsum = a.get(("easgate_request_duration_seconds_sum", ()), 0) - b.get(
    ("easgate_request_duration_seconds_sum", ()), 0)
check(dcount == nreq and db.get(1.0) == nreq - 1 and db.get(2.5) == nreq and dsum >= 2.0,
      "durations: %d requests, all but the 2 s Ping within le=\"1\" (%s), sum %.3f s >= 2"
      % (dcount, db.get(1.0), dsum))

# exposition format
fams = {k[0] for k in a}
base = {re.sub(r'_(bucket|sum|count)$', '', f) if types.get(re.sub(r'_(bucket|sum|count)$', '', f)) == "histogram" else f
        for f in fams}
check(not bad, "every sample line parses (%d unparsable)" % len(bad))
check(all(f in helps and f in types for f in base), "HELP and TYPE for every family (%d)" % len(base))
check(all(f.endswith("_total") for f in base if types.get(f) == "counter"),
      "counters are named *_total")
check(all(f.startswith("easgate_") for f in base), "every family is prefixed easgate_")
print("\n".join(out))
PY
rc=$?
# The script's verdicts count only if it ran to its end: a Python error
# would otherwise make its 18 checks vanish without a FAIL.
check "the scrape comparison script ran to its end (exit $rc)" test "$rc" -eq 0
while IFS='|' read -r k desc; do
	case $k in ok) pass "$desc" ;; bad) fail "$desc" ;; info) echo "$desc" ;; *) fail "unexpected: $k|$desc" ;; esac
done <"$T/verdicts"
n=$(grep -cE '^(ok|bad)\|' "$T/verdicts")
check "...and gave all its 19 verdicts ($n)" test "$n" -eq 19

hdr=$(curl -sS -D - -o /dev/null "http://127.0.0.1:$MPORT/metrics")
check "Content-Type: text/plain; version=0.0.4" grep -qi '^Content-Type: text/plain; version=0.0.4' <<<"$hdr"
check "other paths: 404" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/x")" = 404

# A scraper that connects and sends nothing must not hold anyone up.
python3 -c '
import socket, sys, time
s = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(3)]
time.sleep(8)' "$MPORT" &
STALL_PID=$!
EG_PIDS+=($STALL_PID)
sleep 0.3
t0=$(date +%s%N)
code=$(eas -o /dev/null -w '%{http_code}' -u userAllowA:secret -X POST -H 'MS-ASProtocolVersion: 14.1' \
	-H "User-Agent: $IOS" --data-binary @/dev/null \
	"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Sync&User=userAllowA&DeviceId=AllowA&DeviceType=Phone")")
ms=$((($(date +%s%N) - t0) / 1000000))
check "with 3 stalled scrapers: a request is served at once (HTTP $code in $ms ms)" \
	test "$code" = 200 -a "$ms" -lt 1000
t0=$(date +%s%N)
timeout 10 "$EASCTL" -s "$CTL" status >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
check "with 3 stalled scrapers: the master still answers easctl ($ms ms < 1000)" test "$ms" -lt 1000
kill "$STALL_PID" 2>/dev/null

# The relay path is chosen at start from a probe of this kernel: the phone leg
# is TLS in OpenSSL, so bodies can only leave user space with kernel TLS.
rp=$("$EASCTL" -s "$CTL" status | sed -n 's/^relay //p')
check "easctl status reports the relay path probed at start ($rp)" \
	bash -c '[[ "$0" == *" ktls="[01]* ]] && [[ "$0" == *" splice="[01]* ]]' "$rp"
if [[ "$rp" == *" ktls=0"* ]]; then
	check "...without kernel TLS the phone's (TLS) bodies go through user space, and it says why" \
		bash -c '[[ "$0" == "tls_legs=user "* ]] && [[ "$0" == *"why=\"kernel TLS absent: "* ]]' "$rp"
fi
check "...and logged it once at start" test "$(grep -c 'event=relay_path ' "$T/gw.log")" -ge 1
check "promtool check metrics accepts the scrape" promtool check metrics <"$T/after.prom"
notafter=$(date -d "$(openssl x509 -in "$PKI/server.pem" -noout -enddate | cut -d= -f2)" +%s)
check "easgate_certificate_expiry_timestamp_seconds is the leaf's notAfter ($notafter)" \
	grep -qx "easgate_certificate_expiry_timestamp_seconds{cert=\"$PKI/server.pem\"} $notafter" "$T/after.prom"
kill "$GW_PID"
wait "$GW_PID" 2>/dev/null

# --- hostile label values ---------------------------------------------------------
# Backend names and a certificate path come from the config (libconfig
# escapes \" \\ \n); a DeviceOS family comes from a phone's DeviceInformation
# (the decoder turns control characters into '?', quote and backslash pass).
# A quote in DeviceType is refused (400) before it could reach anything.
# Throttling is on, so its families are scraped too.
HDIR=$T/$'cert "q" \\b\nnl'
mkdir -p "$HDIR" && cp "$PKI/server.pem" "$PKI/server.key" "$HDIR/" || fail "hostile cert dir"
cat >"$T/cfgstr.py" <<'PY'
import sys
print(sys.argv[1].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
PY
cfgstr() { python3 "$T/cfgstr.py" "$1"; }
{
	echo "tls = { certificates = ( { cert = \"$(cfgstr "$HDIR/server.pem")\";"
	echo "  key = \"$(cfgstr "$HDIR/server.key")\"; } ); trust_file = \"$PKI/root.pem\"; };"
	echo "throttle = { enabled = true; };"
	echo "backends = ("
	echo "  { name = \"$(cfgstr 'q"uote')\"; address = \"127.0.0.1:$BE_PORT_cas1\"; health = false; },"
	echo "  { name = \"$(cfgstr 'back\slash')\"; address = \"127.0.0.1:$BE_PORT_cas2\"; health = false; },"
	echo "  { name = \"$(cfgstr $'new\nline')\"; address = \"127.0.0.1:$BE_PORT_cas2\"; health = false; }"
	echo ");"
} >"$T/hostile.conf"
unset GW_PORT
GW_CONFIG_TLS=1 start_gateway -c "$T/hostile.conf" --metrics "127.0.0.1:$MPORT" || finish
HOS='a"b\c 1.0'
SETTINGS=$EG_ROOT/tests/integration/policy/settings-ios701.xml
with_os() { # $1 = DeviceOS (XML text), $2 = output
	python3 -c 'import re, sys; sys.stdout.write(re.sub(r"<OS>.*</OS>", lambda m: "<OS>%s</OS>" % sys.argv[1], open(sys.argv[2]).read()))' \
		"$1" "$SETTINGS" >"$2"
}
with_os "$HOS" "$T/hostile.xml"
with_os 'nl&#10;os 2.0' "$T/hostile-nl.xml"
for b in hostile hostile-nl; do
	wbxml_from_xml "$T/$b.xml" "$T/$b.wbxml" || fail "xml2wbxml $b.xml"
done
check "the hostile DeviceOS is in the WBXML body" grep -qF "$HOS" "$T/hostile.wbxml"
for b in hostile hostile-nl; do
	for u in q1 q2 q3 q4; do # several users: every backend gets some
		eas -o /dev/null -w "$b $u %{http_code}\n" -u "$u:secret" -X POST \
			-H 'MS-ASProtocolVersion: 14.1' -A 'Evil"UA\x' \
			-H 'Content-Type: application/vnd.ms-sync.wbxml' --data-binary "@$T/$b.wbxml" \
			"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Settings&User=$u&DeviceId=${b//-/}$u&DeviceType=Phone")" \
			>>"$T/hostile.codes"
	done
done
check "the phones with hostile values were answered ($(awk '{print $3}' "$T/hostile.codes" | sort | uniq -c | xargs))" \
	test "$(grep -c ' 200$' "$T/hostile.codes")" -eq 8
for _ in $(seq 40); do
	scrape >"$T/hostile.prom"
	grep -q '^easgate_devices{os_family="a' "$T/hostile.prom" && break
	sleep 0.1
done
check "promtool check metrics accepts the scrape with hostile label values" \
	promtool check metrics <"$T/hostile.prom"
promtool check metrics <"$T/hostile.prom" 2>&1 | head -5 | sed 's/^/        /'
python3 - "$T/hostile.prom" "$HDIR/server.pem" >"$T/hostile.verdicts" <<'PY'
import re, sys
prom, cert = sys.argv[1:3]
LABEL = re.compile(r'(\w+)="((?:[^"\\\n]|\\[\\"n])*)"')
ESC = {"n": "\n", "\\": "\\", '"': '"'}
vals = {}
for ln in open(prom):
    if ln.startswith("#") or "{" not in ln:
        continue
    for k, v in LABEL.findall(ln):
        vals.setdefault(k, set()).add(re.sub(r'\\(.)', lambda m: ESC[m.group(1)], v))
def check(ok, desc):
    print(("ok|" if ok else "bad|") + desc)
want = {'q"uote', 'back\\slash', 'new\nline'}
check(want <= vals.get("backend", set()),
      "backend names read back as configured (%r)" % sorted(vals.get("backend", set())))
check(cert in vals.get("cert", set()),
      "the certificate path reads back as configured (%r)" % sorted(vals.get("cert", set())))
check('a"b\\c' in vals.get("os_family", set()),
      "the DeviceOS family reads back as the phone sent it (%r)" % sorted(vals.get("os_family", set())))
PY
rc=$?
check "the label read-back script ran (exit $rc)" test "$rc" -eq 0
while IFS='|' read -r k desc; do
	case $k in ok) pass "$desc" ;; bad) fail "$desc" ;; *) fail "unexpected line: $k|$desc" ;; esac
done <"$T/hostile.verdicts"
check "...all 3 read-back checks ran" test "$(grep -cE '^(ok|bad)\|' "$T/hostile.verdicts")" -eq 3
finish
