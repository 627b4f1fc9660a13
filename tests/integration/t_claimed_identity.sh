#!/usr/bin/env bash
# Issue #9, "claimed identities": User= and the Basic user name are claims
# until a backend accepts the credentials. 10,000 requests claiming the user
# "victim" with a wrong password or none (the demo backend answers 401, as
# Exchange does), each from a DeviceId never seen before, a random iOS build
# in the User-Agent and, one in four, DeviceInformation naming a random model,
# through the real gateway (2 workers, default access "quarantine", default
# budgets with a 10 s cool-down to keep the test short):
#  - the victim's real phone, approved before, syncs all along (200 relayed);
#  - no fake device is counted for the victim: none of them gets 177, and
#    the victim's NEW phone set up right after is never refused with 177
#    (before the fix: 177 MaximumDevicesReached after the 100th fake);
#  - the inventory grows by nothing: no device row, no OS-version row
#    (sqlite3 on the file), the files by at most 64 KiB; the quarantine queue
#    holds only the real new phone, which the admin approves;
#  - unauthenticated requests are throttled: the backend sees at most the
#    budget (burst + rate x time) of the flood;
#  - the master gets no event from the claims (easgate_inventory_events_total
#    moves by the real phone's few): nothing to write, no policy generation
#    to publish, so no worker's cache is flushed because of them;
#  - the unauthenticated sightings are listed (`easctl devices
#    --unauthenticated`), at most the table's 4,096 entries;
# then 15,000 more claims, each of its own user (no shared budget holds
# them back: all reach the backend), to fill every bounded table:
#  - still no row, the listing holds at most 4,096, the real phone syncs;
#  - memory stays flat: no process's RSS grows by more than 2 MiB over the
#    second half of the first flood or the last third of this one, nor by
#    more than 32 MiB in all (the fixed tables: throttle 14 MiB and
#    sightings 10.4 MiB shared, caches 4.6 MiB per worker; see README
#    "Claimed identities").
source "$(dirname "$0")/lib.sh"
need curl python3 xml2wbxml sqlite3 ps
ID=$EG_ROOT/tests/integration/identity
make_pki
start_backend cas1 --auth victim:secret --auth alice:secret || finish
wbxml_from_xml "$EG_ROOT/tests/integration/policy/foldersync.xml" "$T/foldersync.wbxml" || { fail xml2wbxml; finish; }
wbxml_from_xml "$ID/provision-di.xml" "$T/provision-di.wbxml" || { fail xml2wbxml; finish; }
cat >"$T/gw.conf" <<'CONF'
policy = {
  default = "quarantine";
  allowed_device_ids = ( "Claim0700000013" );  # a personal-list DeviceId among the fakes
};
throttle = {
  enabled = true;
  classes = ( { name = "default"; cooldown = 10; } );
};
CONF
# Under ASan, freed memory sits in a quarantine (256 MB by default) before it
# is reused, so RSS would measure ASan, not the gateway: turn it off.
grep -qa __asan_init "$EASGATED" && export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"
GW_WORKERS=2 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
ctl() { "$EASCTL" -s "$CTL" "$@"; }
DB=$T/state/inventory.db

# phone DEVID CMD PASSWORD: one request of the user victim; prints "status
# backend" where status is "200/N" for a gateway envelope with EAS status N.
phone() {
	local h b st be
	h=$(mktemp -p "$T") b=$(mktemp -p "$T")
	st=$(eas -u "victim:$3" -A 'Apple-iPhone9C3/1402.100' -H 'MS-ASProtocolVersion: 14.1' \
		-H 'Content-Type: application/vnd.ms-sync.wbxml' --data-binary "@$T/foldersync.wbxml" \
		-o "$b" -D "$h" -w '%{http_code}' \
		"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=$2&User=victim&DeviceId=$1&DeviceType=iPhone")")
	be=$(sed -n 's/^X-Backend: *\([^[:space:]]*\).*/\1/Ip' "$h" | grep . || echo -)
	if [ "$st" = 200 ] && [ "$be" = - ] && [ -s "$b" ]; then
		st=$(python3 -c 'import re,sys; m=re.search(rb"\x03(\d+)\x00", open(sys.argv[1],"rb").read()); print("200/"+m.group(1).decode() if m else "200/?")' "$b")
	fi
	echo "$st $be"
	rm -f "$h" "$b"
}
events() { ctl metrics | awk '$1 == "easgate_inventory_events_total" {print $2}'; }
rows() { sqlite3 -readonly "$DB" "SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM os_versions);"; }
dbsize() { stat -c %s "$DB" "$DB-wal" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
rss() { # "pid:kib ..." of the master and its workers
	local p
	for p in "$GW_PID" $(ps -o pid= --ppid "$GW_PID"); do
		echo -n "$p:$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status") "
	done
}

echo "# the victim's real phone: set up, quarantined, approved"
out=$(phone VICTIMPHONE1 FolderSync secret)
check "its FolderSync is relayed while quarantined ($out)" test "$out" = "200 cas1"
ctl device approve VICTIMPHONE1 --user victim >/dev/null
check "the admin approves it" test $? -eq 0
out=$(phone VICTIMPHONE1 Sync secret)
check "approved: its Sync reaches the backend ($out)" test "$out" = "200 cas1"

ctl devices >/dev/null # applies and commits what the workers reported
read -r dev0 ver0 < <(rows | tr '|' ' ')
size0=$(dbsize)
rss0=$(rss)
ev0=$(events)
echo "  before: devices=$dev0 os_versions=$ver0 db+wal=$size0 B rss(KiB)=$rss0"

flood() { # $1 first index, $2 count, $3 report, [$4 user prefix --random-users]
	local users=(--user victim)
	[ -n "${4:-}" ] && users=(--user "$4" --random-users)
	python3 "$ID/claim_flood.py" --port "$GW_PORT" --cafile "$PKI/root.pem" "${users[@]}" \
		--count "$2" --first "$1" --seed 7 --conns 8 --foldersync "$T/foldersync.wbxml" \
		--provision "$T/provision-di.wbxml" --victim-device VICTIMPHONE1 >"$3" 2>"$3.err"
}
echo "# 10,000 claims of the user victim, in two halves"
flood 0 5000 "$T/flood1.json"
check "first 5,000 claims sent, every one answered" test $? -eq 0
rss1=$(rss)
flood 5000 5000 "$T/flood2.json"
check "second 5,000 claims sent, every one answered" test $? -eq 0
rss2=$(rss)
ctl devices >/dev/null
read -r dev1 ver1 < <(rows | tr '|' ' ')
size1=$(dbsize)
ev1=$(events)
echo "  after:  devices=$dev1 os_versions=$ver1 db+wal=$size1 B rss(KiB)=$rss2"

summary=$(python3 - "$T/flood1.json" "$T/flood2.json" <<'PY'
import json, sys
fl, be, vic, secs = {}, {}, [], 0.0
for f in sys.argv[1:]:
    r = json.load(open(f))
    for k, v in r["flood"].items():
        fl[k] = fl.get(k, 0) + v
    for k, v in r["flood_backend"].items():
        be[k] = be.get(k, 0) + v
    vic += r["victim"]
    secs += r["seconds"]
secs = round(secs, 1)
print(sum(fl.values()), fl.get("200/177", 0), sum(v for k, v in fl.items() if k == "200" or k[:1] == "2" and "/" not in k),
      sum(be.values()), len(vic), sum(1 for s, b in vic if s == 200 and b == "cas1"), secs,
      json.dumps(fl, sort_keys=True).replace(" ", ""))
PY
)
read -r n n177 n2xx nbe nvic nvicok secs hist <<<"$summary"
echo "  flood answers: $hist in ${secs}s; $nbe reached the backend; real phone: $nvicok/$nvic relayed 200"
check "all 10,000 claims answered" test "$n" -eq 10000
check "the real phone synced all along: $nvicok of $nvic Syncs relayed with 200" \
	bash -c '[ $0 -gt 0 ] && [ $0 -eq $1 ]' "$nvicok" "$nvic"
check "no claim was answered 177 (no fake device counted for the victim): $n177" test "$n177" -eq 0
check "no claim was answered 2xx: $n2xx" test "$n2xx" -eq 0
check "unauthenticated claims are throttled: $nbe reached the backend (<= 300 + 3/s x ${secs}s + 50)" \
	python3 -c 'import sys; sys.exit(0 if int(sys.argv[1]) <= 300 + 3 * float(sys.argv[2]) + 50 else 1)' "$nbe" "$secs"
check "no device row from the claims: $dev0 before, $dev1 after" test "$dev1" -eq "$dev0"
check "no OS-version row from the claims' User-Agents: $ver0 before, $ver1 after" test "$ver1" -eq "$ver0"
check "inventory files grew by $((size1 - size0)) bytes (<= 65536)" test $((size1 - size0)) -le 65536
check "the master got $((ev1 - ev0)) inventory events meanwhile (<= 50: the real phone's only)" \
	bash -c '[ -n "$0" ] && [ -n "$1" ] && [ $(($1 - $0)) -le 50 ]' "$ev0" "$ev1"
out=$(ctl devices --format csv | tail -n +2 | cut -d, -f1,2)
check "easctl devices: only the real phone ($(wc -l <<<"$out") rows, first: $(head -1 <<<"$out"))" \
	test "$out" = "victim,VICTIMPHONE1"
out=$(ctl devices --state Quarantined --format csv | tail -n +2 | wc -l)
check "the quarantine queue holds no claim ($out)" test "$out" -eq 0
ctl devices --unauthenticated --user victim --format csv >"$T/unauth.csv"
check "easctl devices --unauthenticated works" test $? -eq 0
nun=$(tail -n +2 "$T/unauth.csv" | grep -c ',Claim07')
check "...lists claims as seen, not yet authenticated: $nun of 10,000 (1..4096 kept)" \
	bash -c '[ $0 -ge 1 ] && [ $0 -le 4096 ]' "$nun"
one=$(tail -n +2 "$T/unauth.csv" | grep ',Claim07' | grep -vm1 ',Claim0700000013,' | cut -d, -f2)
out=$(ctl device show "$one" --user victim 2>&1)
check "device show $one: seen, not authenticated, quarantined" \
	bash -c 'grep -q "^Authenticated: *no" <<<"$0" && grep -q "^AccessState: *Quarantined" <<<"$0" &&
		grep -q "^LastStatus: *401" <<<"$0"' "$out"
if grep -q ',Claim0700000013,' "$T/unauth.csv"; then
	out=$(ctl device show Claim0700000013 --user victim 2>&1)
	check "the claim with a personally allowed DeviceId: Allowed, yet not authenticated, no row" \
		bash -c 'grep -q "^Authenticated: *no" <<<"$0" && grep -q "^AccessState: *Allowed" <<<"$0"' "$out"
fi
ctl device approve "$one" --user victim >"$T/approve.out" 2>&1
check "device approve $one: exit 2, it is no device (says how to let it in)" \
	bash -c '[ $0 -eq 2 ] && grep -q "never authenticated" "$1"' $? "$T/approve.out"

echo "# 15,000 claims, each of its own user, in three rounds"
flood 10000 5000 "$T/flood3.json" claimant
check "5,000 claims of 5,000 users sent, every one answered" test $? -eq 0
flood 15000 5000 "$T/flood4.json" claimant
check "5,000 more, every one answered" test $? -eq 0
rss3=$(rss)
flood 20000 5000 "$T/flood5.json" claimant
check "5,000 more, every one answered" test $? -eq 0
rss4=$(rss)
read -r n nbe nvic nvicok hist < <(python3 - "$T/flood3.json" "$T/flood4.json" "$T/flood5.json" <<'PY'
import json, sys
fl, be, vic = {}, 0, []
for f in sys.argv[1:]:
    r = json.load(open(f))
    for k, v in r["flood"].items():
        fl[k] = fl.get(k, 0) + v
    be += sum(r["flood_backend"].values())
    vic += r["victim"]
print(sum(fl.values()), be, len(vic), sum(1 for s, b in vic if s == 200 and b == "cas1"),
      json.dumps(fl, sort_keys=True).replace(" ", ""))
PY
)
echo "  flood answers: $hist; $nbe reached the backend; real phone: $nvicok/$nvic relayed 200"
check "the real phone synced all along: $nvicok of $nvic" bash -c '[ $0 -gt 0 ] && [ $0 -eq $1 ]' "$nvicok" "$nvic"
check "every claim answered 401 by the backend ($nbe of $n)" \
	bash -c '[ $0 -eq 15000 ] && [ $1 -eq 15000 ] && [ "$2" = "{\"401\":15000}" ]' "$n" "$nbe" "$hist"
ctl devices >/dev/null
read -r dev2 ver2 < <(rows | tr '|' ' ')
size2=$(dbsize)
ev2=$(events)
check "the master got $((ev2 - ev1)) inventory events meanwhile (<= 50)" \
	bash -c '[ -n "$0" ] && [ -n "$1" ] && [ $(($1 - $0)) -le 50 ]' "$ev1" "$ev2"
check "still no row: devices $dev2, os_versions $ver2; files +$((size2 - size0)) bytes" \
	bash -c '[ $0 -eq $1 ] && [ $2 -eq $3 ] && [ $4 -le 65536 ]' "$dev2" "$dev0" "$ver2" "$ver0" "$((size2 - size0))"
nun=$(ctl devices --unauthenticated --format csv | tail -n +2 | wc -l)
check "the sightings table is full, not more: $nun listed (<= 4096)" \
	bash -c '[ $0 -gt 3000 ] && [ $0 -le 4096 ]' "$nun"
ctl metrics | grep -E '^easgate_unauthenticated_(devices|devices_capacity|displaced_total) ' >"$T/m"
check "metrics: the table's fill, capacity and displacements ($(tr '\n' ' ' <"$T/m"))" \
	awk '{m[$1] = $2} END {exit !(m["easgate_unauthenticated_devices_capacity"] == 4096 &&
		m["easgate_unauthenticated_devices"] <= 4096 && m["easgate_unauthenticated_displaced_total"] > 0)}' "$T/m"
check "memory: no process grew by more than 2 MiB over the second half or last third of a flood, 32 MiB in all" \
	python3 - "$rss0" "$rss1" "$rss2" "$rss3" "$rss4" <<'PY'
import sys
r = [dict(x.split(":") for x in s.split()) for s in sys.argv[1:]]
bad = 0
for pid in r[0]:
    k = [int(x.get(pid, 0)) for x in r]
    print("    pid %s: %s KiB" % (pid, " -> ".join(map(str, k))))
    if 0 in k or k[2] - k[1] > 2048 or k[4] - k[3] > 2048 or max(k) - k[0] > 32768:
        bad += 1
sys.exit(1 if bad else 0)
PY

echo "# the victim's new phone, right after the flood"
got=() st=
for _ in $(seq 150); do
	st=$(phone VICTIMNEW FolderSync secret)
	got+=("${st%% *}")
	[ "$st" = "200 cas1" ] && break
	sleep 0.1
done
hist=$(printf '%s\n' "${got[@]}" | sort | uniq -c | awk '{printf "%s x%s ", $2, $1}')
check "its FolderSync is relayed (quarantine lets it through) within 15 s: $hist" test "$st" = "200 cas1"
check "...never refused with 177" bash -c '! grep -q "/177" <<<"$0"' "$hist"
out=$(ctl devices --state Quarantined --format csv | tail -n +2 | cut -d, -f1,2)
check "the quarantine queue holds exactly the new phone ($(wc -l <<<"$out") rows, first: $(head -1 <<<"$out"))" \
	test "$out" = "victim,VICTIMNEW"
ctl device approve VICTIMNEW --user victim >/dev/null
out=$(phone VICTIMNEW Sync secret)
check "approved: its Sync reaches the backend ($out)" test "$out" = "200 cas1"
finish
