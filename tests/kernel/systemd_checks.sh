#!/usr/bin/env bash
# systemd_checks.sh - what t_systemd_guest.sh runs inside the guest, where
# systemd is PID 1 (tests/kernel/vm.sh run -s): install the package the
# Debian way, run easgate as its unit, and check what an admin relies on.
#
#   systemd_checks.sh DEB_DIR PKI_DIR BUILD_DIR
#
# DEB_DIR holds one easgate_*.deb; PKI_DIR is tools/mkcerts.sh's output for
# localhost/127.0.0.1; BUILD_DIR has eas-demo-backend and eas-fleet. Prints
# PASS/FAIL/INFO lines and "systemd guest: N passed, M failed"; exits 1 if a
# check failed. Meant for a throwaway system only (it installs a package,
# writes /etc/easgate, starts and kills services).
set -uo pipefail
deb_dir=$1 pki=$2 O=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
passes=0 fails=0
pass() { passes=$((passes + 1)); printf '  PASS  %s\n' "$*"; }
fail() { fails=$((fails + 1)); printf '  FAIL  %s\n' "$*"; }
info() { printf '  INFO  %s\n' "$*"; }
check() {
	local d=$1
	shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}
finish() {
	echo "systemd guest: $passes passed, $fails failed"
	[ "$fails" -eq 0 ]
	exit $?
}
t0=$(date +%s%N)
ms() { echo $((($(date +%s%N) - ${1:-$t0}) / 1000000)); }
W=$(mktemp -d /tmp/egsd.XXXXXX)
prop() { systemctl show -P "$1" easgate; }
# until SECONDS CMD...: run CMD every 0.2 s until it succeeds, at most SECONDS.
until_ok() {
	local end=$((SECONDS + $1))
	shift
	while ! "$@"; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.2
	done
}
# Timeouts sized for an emulated CPU on a loaded host (TCG: 10-50x slower).
CURL=(curl -sS --max-time 60 --cacert "$pki/root.pem" --resolve localhost:443:127.0.0.1)
# eas_req CMD DEVICE [BODY_HEX]: one EAS POST; prints the status and writes
# the headers and body into $W/h and $W/b.
eas_req() {
	printf '%s' "${3:-03016a00455c4f4b0330000101}" | xxd -r -p >"$W/req.$2"
	"${CURL[@]}" -o "$W/b.$2" -D "$W/h.$2" -w '%{http_code}' -u "user$2:secret" -X POST \
		-H 'MS-ASProtocolVersion: 14.1' -H 'User-Agent: Apple-iPhone9C1/1402.72' \
		-H 'Content-Type: application/vnd.ms-sync.wbxml' --data-binary "@$W/req.$2" \
		"https://localhost/Microsoft-Server-ActiveSync?Cmd=$1&User=user$2&DeviceId=$2&DeviceType=iPhone"
}
# probe DEVICE -> blocked (the gateway answered EAS status 129) | relayed | other:CODE
probe() {
	local code
	code=$(eas_req Sync "$1")
	if grep -qi '^X-Backend:' "$W/h.$1"; then
		echo relayed
	elif [ "$code" = 200 ] && grep -q 129 "$W/b.$1"; then
		echo blocked
	else
		echo "other:$code"
	fi
}
# write_conf N [BROKEN]: the gateway's config; its rule blocks DeviceId ProbeN.
write_conf() {
	cat >/etc/easgate/easgate.conf <<EOF
listen = [ "127.0.0.1:443" ];
workers = 2;
log_level = "info";
access_log = true;
tls = {
  certificates = ( { cert = "/etc/easgate/tls/server.pem"; key = "/etc/easgate/tls/server.key"; } );
  trust_file = "/etc/easgate/tls/root.pem";
};
timeouts = { drain = 20; };
backends = ( { name = "cas1"; address = "127.0.0.1:8081"; tls = false;
               health = { path = "/health"; interval = 1; timeout = 1; rise = 1; fall = 2; }; } );
policy = { rules = ( "block DeviceId is \"Probe$1\" name \"probe$1\"" ); };
EOF
	[ -z "${2:-}" ] || echo 'limits = { max_head = ; };' >>/etc/easgate/easgate.conf
}
ctl() { easctl "$@" 2>&1; }
metric() { ctl metrics | awk -v k="$1" '$1 == k { print $2 }'; }

info "systemd $(systemctl --version | awk 'NR==1 { print $2 }') as PID 1 ($(cat /proc/1/comm)), kernel $(uname -r), state $(systemctl is-system-running)"
check "systemd is PID 1" test "$(cat /proc/1/comm)" = systemd

# --- 1. apt-get install ./easgate_*.deb, offline --------------------------------------------
# An empty lists dir: apt resolves the package's dependencies against what
# is installed only (no network in the guest), and does not read the host's
# lists (15-24 s more under TCG).
mkdir -p "$W/lists/partial"
cd "$deb_dir" || exit 1
debs=(./easgate_*.deb)
t=$(date +%s%N)
out=$(DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dir::State::Lists="$W/lists" install ./easgate_*.deb 2>&1)
rc=$?
cd "$root" || exit 1
check "apt-get install ${debs[0]#./} (exit $rc, $(ms "$t") ms)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || { echo "$out" | tail -20; finish; }
check "the unit is known to systemd and not enabled (loaded, disabled)" \
	test "$(systemctl show -P LoadState easgate)/$(systemctl is-enabled easgate 2>&1)" = loaded/disabled
check "the easgate user exists (sysusers ran)" id easgate
check "/sys/fs/bpf/easgate exists, owned by easgate (tmpfiles ran)" \
	test "$(stat -c %U 2>/dev/null /sys/fs/bpf/easgate)" = easgate

# --- 2. configure: certificates, a backend, the watchdog scaled --------------------------------
install -m 0644 "$pki/server.pem" "$pki/root.pem" /etc/easgate/tls/ &&
	install -m 0600 "$pki/server.key" /etc/easgate/tls/ || fail "cannot install the certificates"
write_conf 0
# The demo backend, a transient unit of its own; it holds each Ping 15 s (a
# long-poll in flight during reloads and the stop).
systemd-run --quiet --unit=eg-demo-backend -p Type=exec -p DynamicUser=yes \
	"$O/eas-demo-backend" --listen 127.0.0.1:8081 --name cas1 --quiet --hold-ping-ms 15000
check "the demo backend runs as a transient unit and answers" \
	until_ok 30 curl -sf -o /dev/null http://127.0.0.1:8081/health
# The unit's own WatchdogSec (30 s) until the SIGSTOP check (section 6),
# which lowers it so that it does not wait 30-45 s: a reload at host load 16
# took 17.7 s here, and what is checked up to there is the unit as shipped.

# --- 3. start: Type=notify ---------------------------------------------------------------------
t=$(date +%s%N)
systemctl start easgate
rc=$?
start_ms=$(ms "$t")
# Right after `systemctl start` returns, with no retry: READY=1 came when it served.
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' https://localhost/ 2>&1)
st=$(ctl status)
check "systemctl start easgate exits 0 in $start_ms ms" test "$rc" -eq 0
check "active (running) through Type=notify ($(prop ActiveState) ($(prop SubState)), Type=$(prop Type))" \
	test "$(prop ActiveState)/$(prop SubState)/$(prop Type)" = active/running/notify
check "serving when start returns: HTTPS on 127.0.0.1:443 answers (HTTP $code)" test "$code" = 404
check "root's easctl status answers the unit's daemon when start returns (${st%%$'\n'*})" \
	grep -q '^workers ' <<<"$st"
check "the unit's status line is the daemon's STATUS= ($(prop StatusText))" \
	grep -q '^gen 1, 2 workers' <<<"$(prop StatusText)"
MAIN=$(prop MainPID)
if [ "$rc" -ne 0 ] || [ "${MAIN:-0}" -eq 0 ]; then
	systemctl status easgate --no-pager -l | tail -20
	journalctl -u easgate --no-pager | tail -20
	finish
fi

# --- 4. user and capabilities, as the kernel sees them --------------------------------------------
unit=/lib/systemd/system/easgate.service
# capmask "CAP_A CAP_B": the /proc/PID/status hex mask of those capabilities,
# numbered as the kernel's header says.
capmask() {
	local c n mask=0
	for c in $1; do
		n=$(awk -v c="$c" '$1 == "#define" && $2 == c && $3 ~ /^[0-9]+$/ { print $3 }' \
			/usr/include/linux/capability.h)
		[ -n "$n" ] || { echo "unknown-$c"; return; }
		mask=$((mask | (1 << n)))
	done
	printf '%016x\n' "$mask"
}
capfield() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
AMB=$(sed -n 's/^AmbientCapabilities=//p' "$unit")
BND=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit")
amb=$(capmask "$AMB")
bnd=$(capmask "$BND")
uid=$(id -u easgate)
info "unit: AmbientCapabilities=$AMB ($amb), CapabilityBoundingSet ($bnd)"
check "master (pid $MAIN) runs as easgate (Uid: $(capfield "$MAIN" Uid | head -1))" \
	test "$(awk '$1 == "Uid:" { print $2 $3 $4 $5 }' "/proc/$MAIN/status")" = "$uid$uid$uid$uid"
check "master CapEff = CapPrm = CapAmb = the unit's AmbientCapabilities ($(capfield "$MAIN" CapEff))" \
	test "$(capfield "$MAIN" CapEff)/$(capfield "$MAIN" CapPrm)/$(capfield "$MAIN" CapAmb)" = "$amb/$amb/$amb"
check "master CapBnd = the unit's CapabilityBoundingSet ($(capfield "$MAIN" CapBnd))" \
	test "$(capfield "$MAIN" CapBnd)" = "$bnd"
check "master: NoNewPrivs 1, seccomp filter on" \
	test "$(capfield "$MAIN" NoNewPrivs)/$(capfield "$MAIN" Seccomp)" = 1/2
workers=$(cat "/proc/$MAIN/task/$MAIN/children")
nw=0
for w in $workers; do
	[ "$(capfield "$w" CapEff)$(capfield "$w" CapPrm)$(capfield "$w" CapAmb)" = \
		000000000000000000000000000000000000000000000000 ] &&
		[ "$(capfield "$w" CapBnd)" = "$bnd" ] &&
		[ "$(awk '$1 == "Uid:" { print $2 }' "/proc/$w/status")" = "$uid" ] && nw=$((nw + 1))
done
check "both workers run as easgate with no capability at all ($nw/2: pids $(echo $workers))" test "$nw" -eq 2

# --- 5. systemctl reload under a load of 100 phones --------------------------------------------------
until_ok 20 bash -c '[ "$(easctl backends 2>/dev/null | grep -c " up")" -ge 1 ]' ||
	fail "backend cas1 not up in easctl backends"
# The fleet outlasts the reloads: it runs fleet_s seconds, and each reload
# waits until the fleet has at least 10 s left, so that every reload (17.7 s
# at host load 16) happens with phones' requests in flight around it.
fleet_s=60
"$O/eas-fleet" --connect 127.0.0.1:443 --sni localhost --cafile "$pki/root.pem" --devices 100 \
	--loopers 0 --duration "$fleet_s" --think-ms 300,1500 --ramp-ms 3000 --good-timeout-ms 60000 \
	--captures "$root/tests/data/eas-captures" \
	--out "$W/fleet.json" >"$W/fleet.log" 2>&1 &
fleet=$!
tf=$(date +%s%N)
sleep 5
bad=0 rl=()
for i in 1 2 3; do
	left=$((fleet_s - $(ms "$tf") / 1000))
	[ "$left" -ge 10 ] || { rl+=("reload $i: only $left s of the fleet left, not under load"); bad=$((bad + 1)); break; }
	write_conf "$i"
	t=$(date +%s%N)
	systemctl reload easgate
	rc=$?
	d=$(ms "$t")
	# What an admin sees right after `systemctl reload` returned, no retry.
	got="$(probe "Probe$i") $(probe "Probe$((i - 1))")"
	rl+=("reload $i at $(((t - tf) / 1000000)) ms into the fleet: exit $rc, ${d} ms, Probe$i/Probe$((i - 1)) $got")
	[ "$rc" -eq 0 ] && [ "$got" = "blocked relayed" ] || bad=$((bad + 1))
	sleep 3
done
printf '  INFO  %s\n' "${rl[@]}"
check "systemctl reload x3 under load: each exits 0 and its rule is in force when it returns" test "$bad" -eq 0
# A broken file: the reload is refused, systemctl says so, the old config stays.
write_conf 4 broken
out=$(systemctl reload easgate 2>&1)
rc=$?
check "systemctl reload of a broken file fails (exit $rc) and the unit stays active ($(prop ActiveState))" \
	test "$rc" -ne 0 -a "$(prop ActiveState)" = active
check "...and the rules of reload 3 stay in force (Probe3: $(probe Probe3))" test "$(probe Probe3)" = blocked
write_conf 3
wait "$fleet"
rc=$?
check "eas-fleet (100 phones, $fleet_s s) ran (exit $rc)" test "$rc" -eq 0
python3 - "$W/fleet.json" >"$W/fleet.sum" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["well_behaved"]
st = r["statuses"]
bad = {k: v for k, v in st.items() if not k.startswith("2")}
print(r["devices"], r["requests"], r["responses"], r["timeouts"], r["resets"], r["connect_errors"],
      r["refused_devices"], r["dropped_devices"], sum(bad.values()), json.dumps(st).replace(" ", ""))
print("latency ms p50/p90/p99 %(p50)s/%(p90)s/%(p99)s;" % r["latency_ms"],
      "answers by second", r["responses_by_second"], "failed by the second sent", r["failed_by_second_sent"])
PY
read -r ndev nreq nresp nto nrst ncon nref ndrop nbad sts <"$W/fleet.sum"
info "fleet: $ndev devices, $nreq requests, $nresp answers, statuses $sts"
info "fleet: $(tail -1 "$W/fleet.sum")"
check "no request failed across the reloads: no timeout, reset, refused connect or non-2xx ($nto/$nrst/$ncon/$nbad)" \
	test "${nto:-x}${nrst:-x}${ncon:-x}${nbad:-x}${nref:-x}${ndrop:-x}" = 000000
# Why, when not: the daemon's and systemd's warnings (worker_stalled, a watchdog timeout).
[ "${nto:-x}${nrst:-x}${ncon:-x}${nbad:-x}" = 0000 ] ||
	journalctl -u easgate -p warning -o cat --no-pager | tail -15 | sed 's/^/  INFO  journal: /'
check "100 phones made requests ($nreq) and every one but those in flight at the end got its answer ($nresp)" \
	test "${nreq:-0}" -ge 200 -a "$((nreq - nresp))" -le "${ndev:-0}"
check "no watchdog restart so far (NRestarts $(prop NRestarts), MainPID $(prop MainPID))" \
	test "$(prop NRestarts)/$(prop MainPID)" = "0/$MAIN"
info "reloads in the journal: $(journalctl -u easgate -o cat --no-pager | grep -o 'event=reloaded gen=[0-9]* hold_ms=[0-9]*.*' | tr '\n' ';')"

# --- 6. a stopped worker trips the watchdog -------------------------------------------------------------
# WatchdogSec=30 would make this wait 30-45 s: 10 s, by a drop-in, for this
# check only (set now, and the unit restarted so that the daemon reads it).
mkdir -p /etc/systemd/system/easgate.service.d
printf '[Service]\nWatchdogSec=10\n' >/etc/systemd/system/easgate.service.d/test-watchdog.conf
systemctl daemon-reload && systemctl restart easgate
rc=$?
MAIN1=$(prop MainPID)
check "WatchdogSec lowered by a drop-in and the unit restarted (exit $rc, $(prop WatchdogUSec), MainPID $MAIN -> $MAIN1)" \
	test "$rc" -eq 0 -a "$(prop WatchdogUSec)" = 10s -a "$MAIN1" != "$MAIN" -a "$MAIN1" != 0
n0=$(prop NRestarts)
until_ok 60 bash -c '[ "$(wc -w <"/proc/$0/task/$0/children")" -ge 2 ]' "$MAIN1" ||
	fail "the restarted unit has no two workers"
w1=$(cut -d' ' -f1 "/proc/$MAIN1/task/$MAIN1/children")
t=$(date +%s%N)
kill -STOP "$w1"
until_ok 60 bash -c '[ "$(systemctl show -P NRestarts easgate)" = "$0" ] && [ "$(systemctl show -P ActiveState easgate)" = active ]' "$((n0 + 1))"
rc=$?
d=$(ms "$t")
MAIN2=$(prop MainPID)
check "SIGSTOP of worker $w1: the unit restarted (NRestarts $(prop NRestarts), after $d ms; WatchdogSec=$(prop WatchdogUSec))" \
	test "$rc" -eq 0
check "a new main process ($MAIN1 -> $MAIN2), serving again" \
	bash -c '[ "$0" != "$1" ] && [ "$1" != 0 ] && [ "$("${@:2}" -o /dev/null -w "%{http_code}" https://localhost/)" = 404 ]' \
	"$MAIN1" "$MAIN2" "${CURL[@]}"
check "the journal says why: a watchdog timeout" \
	bash -c 'journalctl -u easgate --no-pager | grep -q "Watchdog timeout"'
kill -0 "$w1" 2>/dev/null && kill -KILL "$w1" 2>/dev/null

# --- 7. systemctl stop drains -----------------------------------------------------------------------------
until_ok 20 bash -c '[ "$(easctl backends 2>/dev/null | grep -c " up")" -ge 1 ]' ||
	fail "backend cas1 not up after the restart"
# A Ping long-poll, held 15 s by the backend.
(
	code=$(eas_req Ping HeldDev 03016a00000d4548033630000101)
	echo "$code $(ms)" >"$W/held.done"
) &
held=$!
until_ok 20 bash -c '[ "$(easctl metrics 2>/dev/null | awk '\''$1 == "easgate_long_polls" { print $2 }'\'')" = 1 ]' ||
	fail "the held Ping never showed in easgate_long_polls"
t=$(date +%s%N)
systemctl stop easgate
rc=$?
d=$(ms "$t")
wait "$held"
read -r hcode _ <"$W/held.done"
pingst=$(xxd -p "$W/b.HeldDev" 2>/dev/null | tr -d '\n')
check "systemctl stop exits 0 in $d ms (drain bound 20 s)" test "$rc" -eq 0 -a "$d" -lt 20000
check "the held Ping got its documented answer: 200, Ping Status 1 (no changes) (HTTP $hcode, $pingst)" \
	bash -c '[ "$0" = 200 ] && grep -q "033100" <<<"$1"' "$hcode" "$pingst"
check "the stop was clean: Result=$(prop Result), main exit $(prop ExecMainStatus), $(prop ActiveState)" \
	test "$(prop Result)/$(prop ExecMainStatus)/$(prop ActiveState)" = success/0/inactive
check "no worker hit the drain deadline" bash -c '! journalctl -u easgate --no-pager | grep -q "event=drain_deadline\|event=worker_kill"'

# --- 8. the journal ---------------------------------------------------------------------------------------
# The daemon writes key=value lines to stderr (user/base/log.h), master and
# workers through the one stream systemd gave the service: journald stores
# each line as MESSAGE, attributed to the unit. The stream is the service's,
# so _PID is the process that opened it (the main process); the line's own
# proc= says which process wrote it.
journalctl -u easgate -o json --no-pager >"$W/journal.json"
python3 - "$W/journal.json" "$MAIN" >"$W/journal.sum" <<'PY'
import json, re, sys
main = sys.argv[2]
ours = [json.loads(l) for l in open(sys.argv[1])]
ours = [e for e in ours if e.get("SYSLOG_IDENTIFIER") == "easgated" and isinstance(e.get("MESSAGE"), str)]
kv = [e for e in ours if re.match(r"level=(error|warn|info|debug) proc=[a-z0-9]+ ", e["MESSAGE"])]
msgs = [e["MESSAGE"] for e in kv]
started = any(e.get("_PID") == main and e["MESSAGE"].startswith("level=info proc=master event=started pid=%s " % main) for e in kv)
reloaded = any(" event=reloaded gen=" in m for m in msgs)
refused = any(m.startswith("level=error proc=master event=reload_failed ") for m in msgs)
workers = len({m.split()[1] for m in msgs if m.split()[1].startswith("proc=worker")})
access = any(re.search(r"proc=worker\d event=access client=127\.0\.0\.1 user=\S+ device=\S+ .* cmd=Sync .*status=200", m) for m in msgs)
unit = all(e.get("_SYSTEMD_UNIT") == "easgate.service" for e in ours)
prio = sorted({(m.split()[0], e.get("PRIORITY")) for m, e in zip(msgs, kv)})
print(len(ours), len(kv), int(started), int(reloaded), int(refused), workers, int(access), int(unit),
      ",".join("%s:%s" % p for p in prio))
PY
read -r nall nkv started reloaded refused wprocs access unitok prio <"$W/journal.sum"
info "journal: $nall lines from easgated, $nkv of them the daemon's key=value lines; level:PRIORITY seen $prio"
check "journalctl -u easgate -o json: every easgated line is the unit's (_SYSTEMD_UNIT)" test "${unitok:-0}" = 1
check "...the master's level=info proc=master event=started pid=$MAIN, _PID $MAIN" test "${started:-0}" = 1
check "...event=reloaded and the refused reload (level=error proc=master event=reload_failed)" \
	test "${reloaded:-0}${refused:-0}" = 11
check "...lines of both workers (proc=worker0, proc=worker1: $wprocs)" test "${wprocs:-0}" -ge 2
check "...access lines: proc=workerN event=access client= user= device= cmd=Sync status=200" test "${access:-0}" = 1
check "...PRIORITY follows level= (error 3, warn 4, info 6; seen $prio)" \
	bash -c '[ -n "$0" ] && ! tr , "\n" <<<"$0" | grep -vxE "level=error:3|level=warn:4|level=info:6|level=debug:7"' "$prio"
out=$(journalctl -u easgate -p err -o cat --no-pager)
check "journalctl -u easgate -p err: the refused reload and the stalled worker, no info line" \
	bash -c 'grep -q "event=reload_failed" <<<"$0" && grep -q "event=worker_stalled" <<<"$0" && ! grep -q "^level=info" <<<"$0"' "$out"

# --- 9. an upgrade restarts the enabled unit and keeps its state; purge removes it ----------------
# DEB_DIR/v2/ holds the same package with a higher version (t_systemd_guest.sh
# repacks it). The inventory is the real one the 100 phones above filled.
v2=$(ls "$deb_dir"/v2/easgate_*.deb 2>/dev/null | head -1)
if [ -n "$v2" ]; then
	systemctl enable --quiet --now easgate
	until_ok 60 bash -c 'easctl status 2>/dev/null | grep -q "^workers "'
	pid1=$(prop MainPID)
	ndev1=$(ctl devices --format csv | tail -n +2 | wc -l)
	key1=$(md5sum </var/lib/easgate/steering.key)
	t=$(date +%s%N)
	out=$(DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dir::State::Lists="$W/lists" \
		-o Dpkg::Options::=--force-confold install "$v2" 2>&1)
	rc=$?
	check "apt-get install the next version, $(dpkg-deb -f "$v2" Version) (exit $rc, $(ms "$t") ms)" test "$rc" -eq 0
	[ "$rc" -eq 0 ] || echo "$out" | tail -20
	until_ok 60 bash -c 'easctl status 2>/dev/null | grep -q "^workers "'
	pid2=$(prop MainPID)
	ndev2=$(ctl devices --format csv | tail -n +2 | wc -l)
	check "the upgrade restarted the enabled unit (MainPID $pid1 -> $pid2, $(prop ActiveState))" \
		test "$pid2" != "$pid1" -a "$pid2" != 0 -a "$(prop ActiveState)" = active
	check "it kept the inventory ($ndev1 -> $ndev2 devices in easctl devices) and the steering secret" \
		test "$ndev1" -gt 0 -a "$ndev2" = "$ndev1" -a "$(md5sum </var/lib/easgate/steering.key)" = "$key1"
	check "...and the admin's configuration (still the test's backend)" grep -q '127.0.0.1:8081' /etc/easgate/easgate.conf
	out=$(DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dir::State::Lists="$W/lists" purge easgate 2>&1)
	rc=$?
	# The keys the admin put in /etc/easgate/tls are not the package's: they stay.
	check "apt-get purge easgate (exit $rc): unit stopped and gone, /var/lib/easgate and the config gone" \
		bash -c '[ "$0" -eq 0 ] && ! systemctl is-active --quiet easgate &&
			[ "$(systemctl show -P LoadState easgate)" = not-found ] &&
			[ ! -e /var/lib/easgate ] && [ ! -e /etc/easgate/easgate.conf ]' "$rc"
	check "...the admin's keys in /etc/easgate/tls kept" test -s /etc/easgate/tls/server.key
	[ "$rc" -eq 0 ] || echo "$out" | tail -20
else
	fail "no next version in $deb_dir/v2/ to upgrade to"
fi

info "the whole run took $(ms) ms in the guest"
finish
