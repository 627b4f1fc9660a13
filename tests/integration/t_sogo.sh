#!/usr/bin/env bash
# A real EAS server behind the gateway: SOGo 5.8 from Debian (issue #2).
# Through easgated, over TLS with Basic auth alice:secret, a phone's first
# minute works: OPTIONS, Provision (with DeviceInformation, decoded by
# libwbxml's wbxml2xml), the acknowledgement when SOGo hands out a policy
# key, FolderSync from SyncKey 0 (Inbox present), and the inventory
# (easctl devices) shows the Model and OS from the Provision body. SOGo
# closes its side after every response without saying so: several requests
# on one client connection, one after the other and pipelined, each reach
# SOGo exactly once (counted in SOGo's own log and the gateway's access log).
#
# Needs root (packages, PostgreSQL, sogod as user sogo in a private mount
# namespace); installs sogo sogo-activesync postgresql dovecot-imapd
# memcached when missing. Recipe: /work/shared/reference/sogo-recipe.md.
source "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin:/sbin # sogod, dovecot: also when run without a login shell's PATH
need_root
need curl python3 xml2wbxml wbxml2xml unshare setpriv runuser
unshare --mount --propagation private true 2>/dev/null ||
	skip "needs mount namespaces (sogod gets a private /etc/sogo through one)"
source "$EG_ROOT/tests/integration/sogo/services.sh"
trap 'sogo_cleanup; cleanup' EXIT
sogo_install || skip "could not install $SOGO_PKGS (apt-get failed, see above)"
need sogod dovecot memcached pg_ctlcluster pg_isready psql

pg_start || finish
pg_make_db || finish
dovecot_start || finish
memcached_start || finish
sogod_start || finish
check "sogod runs $SOGO_WORKERS workers under its watchdog (${#SOGO_WORKER_PIDS[@]})" \
	test "${#SOGO_WORKER_PIDS[@]}" -eq "$SOGO_WORKERS"

make_pki
# Any answer below 500 is "up": SOGo answers 403 to an unauthenticated GET of
# the EAS path (/SOGo is prepended to the health path as to every request).
start_gateway --backend "sogo=127.0.0.1:$SOGO_PORT,prefix=/SOGo,reuse=never,health=/Microsoft-Server-ActiveSync" ||
	finish
wait_backends_up sogo || { fail "backend sogo not up"; "$EASCTL" -s "$CTL" backends; sogo_log_tail 15; finish; }

SD=$EG_ROOT/tests/integration/sogo
DEVID=ApplF17KQ3XYZ5S1 # iOS-style: letters and digits only (strict_device_id)
UA=Apple-iPhone6C2/1102.55400001
EASQ="/Microsoft-Server-ActiveSync?User=alice&DeviceType=iPhone"
SENT=0 # EAS requests sent to the gateway: SOGo must log exactly this many

for f in provision foldersync; do
	wbxml_from_xml "$SD/$f.xml" "$T/$f.wbxml" || fail "xml2wbxml $f.xml"
done

# Requests SOGo received, from its access log ("POST /SOGo/...?...DeviceId=X" 200).
sogo_seen() { # $1 = regex on the request line; prints the count once it is stable
	local n=-1 m
	for _ in $(seq 30); do
		m=$(grep -cE "\"($1)" "$SOGO_RUN/sogo.log")
		[ "$m" = "$n" ] && break
		n=$m
		sleep 0.2
	done
	echo "$n"
}
paths() { python3 "$SD/wbxml-paths.py" "$1"; }
field() { sed -n "s|^$1=||p" <<<"$2" | head -1; } # field PATH "$paths"

# easpost NAME CMD BODY [curl options...]: POST through the gateway, body to
# $T/NAME.out, headers to $T/NAME.hdr, HTTP status to $code. (Not called in a
# $(...) subshell, so that SENT counts.)
easpost() {
	local name=$1 cmd=$2 body=$3
	shift 3
	SENT=$((SENT + 1))
	code=$(eas -u alice:secret -o "$T/$name.out" -D "$T/$name.hdr" -w '%{http_code}' \
		-H 'Content-Type: application/vnd.ms-sync.wbxml' -H 'MS-ASProtocolVersion: 14.1' \
		-H "User-Agent: $UA" "$@" --data-binary "@$body" \
		"$(GWURL "$EASQ&DeviceId=$DEVID&Cmd=$cmd")")
}

# 1) OPTIONS
SENT=$((SENT + 1))
code=$(eas -u alice:secret -X OPTIONS -o /dev/null -D "$T/options.hdr" -w '%{http_code}' \
	-H "User-Agent: $UA" "$(GWURL /Microsoft-Server-ActiveSync)")
check "OPTIONS through the gateway: 200 ($code)" test "$code" = 200
vers=$(sed -n 's/^MS-ASProtocolVersions: *//Ip' "$T/options.hdr" | tr -d '\r')
cmds=$(sed -n 's/^MS-ASProtocolCommands: *//Ip' "$T/options.hdr" | tr -d '\r')
check "OPTIONS: MS-ASProtocolVersions from SOGo ($vers)" grep -q '14\.1' <<<"$vers"
check "OPTIONS: MS-ASProtocolCommands lists FolderSync and Sync" \
	bash -c '[[ ",$1," == *,FolderSync,* && ",$1," == *,Sync,* ]]' _ "$cmds"
check "OPTIONS reached SOGo (its log has it)" \
	test "$(sogo_seen 'OPTIONS /SOGo/Microsoft-Server-ActiveSync HTTP')" -eq 1

# 2) Provision, initial, with DeviceInformation
easpost prov1 Provision "$T/provision.wbxml"
p=$(paths "$T/prov1.out")
check "Provision through the gateway: 200 ($code)" test "$code" = 200
check "Provision: response is WBXML (Content-Type)" \
	grep -qi '^Content-Type: application/vnd.ms-sync.wbxml' "$T/prov1.hdr"
check "Provision: decodes with wbxml2xml, Provision/Status 1" test "$(field Provision/Status "$p")" = 1
check "Provision: policy type MS-EAS-Provisioning-WBXML" \
	test "$(field Provision/Policies/Policy/PolicyType "$p")" = MS-EAS-Provisioning-WBXML
pkey=$(field Provision/Policies/Policy/PolicyKey "$p")
pstat=$(field Provision/Policies/Policy/Status "$p")
if [ -n "$pkey" ]; then
	# A server with a device policy: acknowledge the temporary key, get the final one.
	check "Provision: Policy Status 1 with a temporary PolicyKey ($pkey)" test "$pstat" = 1
	sed "s/@POLICYKEY@/$pkey/" "$SD/provision-ack.xml" >"$T/provision-ack.xml"
	wbxml_from_xml "$T/provision-ack.xml" "$T/provision-ack.wbxml" || fail "xml2wbxml ack"
	easpost prov2 Provision "$T/provision-ack.wbxml" -H "X-MS-PolicyKey: $pkey"
	p2=$(paths "$T/prov2.out")
	final=$(field Provision/Policies/Policy/PolicyKey "$p2")
	check "Provision acknowledgement: 200 ($code), Status 1, final PolicyKey ($final)" \
		test "$code" = 200 -a "$(field Provision/Status "$p2")" = 1 -a -n "$final"
else
	# SOGo 5.8 has no device policies: its Provision answer is a constant,
	# Policy Status 2 ("no policy for this client") and no PolicyKey, so a
	# client has nothing to acknowledge and goes on with key 0.
	check "Provision: SOGo has no policy for the device (Policy Status 2, no PolicyKey)" \
		test "$pstat" = 2
	# The acknowledgement form anyway (key 0): a Provision without
	# DeviceInformation must pass and must not erase what the first one taught.
	sed "s/@POLICYKEY@/0/" "$SD/provision-ack.xml" >"$T/provision-ack.xml"
	wbxml_from_xml "$T/provision-ack.xml" "$T/provision-ack.wbxml" || fail "xml2wbxml ack"
	easpost prov2 Provision "$T/provision-ack.wbxml" -H "X-MS-PolicyKey: 0"
	check "acknowledgement-form Provision (PolicyKey 0): 200 ($code), Status 1" \
		test "$code" = 200 -a "$(field Provision/Status "$(paths "$T/prov2.out")")" = 1
	final=0
fi
check "both Provisions reached SOGo once each" \
	test "$(sogo_seen "POST /SOGo/Microsoft-Server-ActiveSync\\?[^\"]*DeviceId=$DEVID&Cmd=Provision ")" -eq 2

# 3) FolderSync from SyncKey 0 with the policy key
easpost fs FolderSync "$T/foldersync.wbxml" -H "X-MS-PolicyKey: $final"
p=$(paths "$T/fs.out")
check "FolderSync through the gateway: 200 ($code), Status 1" \
	test "$code" = 200 -a "$(field FolderSync/Status "$p")" = 1
nf=$(field FolderSync/Changes/Count "$p")
check "FolderSync: a new SyncKey and ${nf:-no} folders" \
	test -n "$(field FolderSync/SyncKey "$p")" -a "${nf:-0}" -ge 1
# The Inbox is the folder of Type 2 (MS-ASCMD FolderSync Type); SOGo names it INBOX.
inbox=$(awk -F= '/\/Type=2$/ { sub(/\/Type$/, "", $1); k=$1 }
	/\/DisplayName=/ { d[substr($1, 1, length($1) - 12)] = $2 }
	END { if (k != "") print d[k] }' <<<"$p")
check "FolderSync: Inbox present (Type 2, \"$inbox\")" grep -qi '^inbox$' <<<"$inbox"

# 4) The inventory knows the device, with Model and OS from the Provision body.
devcol() { # devcol COLUMN: that column of $DEVID's row in $T/devices.csv
	python3 -c '
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    if r.get("device_id") == sys.argv[2]:
        print(r.get(sys.argv[3], ""))
' "$T/devices.csv" "$DEVID" "$1"
}
for _ in $(seq 50); do # the master writes the inventory in batches
	"$EASCTL" -s "$CTL" devices --device-id "$DEVID" --format csv >"$T/devices.csv" 2>&1
	[ -n "$(devcol device_os)" ] && break
	sleep 0.1
done
check "easctl devices: $DEVID of alice ($(devcol user))" test "$(devcol user)" = alice
check "easctl devices: Model from the Provision body ($(devcol device_model))" \
	test "$(devcol device_model)" = iPhone6C2
check "easctl devices: OS from the Provision body ($(devcol device_os))" \
	test "$(devcol device_os)" = "iOS 7.0.4 11B554a"
check "easctl devices: FriendlyName ($(devcol friendly_name)), state $(devcol access_state)" \
	test "$(devcol friendly_name)" = "Alice iPhone 5s" -a "$(devcol access_state)" = Allowed

# 5) One client connection, SOGo closing after each response.
# a) one after the other (curl reuses the connection; -w per transfer)
N=6
KA=EgKeepAlive1
args=()
for i in $(seq $N); do
	args+=(-o "$T/ka$i.out" "$(GWURL "$EASQ&DeviceId=$KA&Cmd=FolderSync")")
done
SENT=$((SENT + N))
eas -u alice:secret -w '%{http_code} %{num_connects}\n' -H 'MS-ASProtocolVersion: 14.1' \
	-H 'Content-Type: application/vnd.ms-sync.wbxml' -H 'X-MS-PolicyKey: 0' \
	--data-binary "@$T/foldersync.wbxml" "${args[@]}" >"$T/ka.txt"
ok=0
for i in $(seq $N); do
	[ "$(field FolderSync/Status "$(paths "$T/ka$i.out" 2>/dev/null)")" = 1 ] && ok=$((ok + 1))
done
check "keep-alive: $N FolderSyncs answered 200 ($(grep -c '^200 ' "$T/ka.txt"))" \
	test "$(grep -c '^200 ' "$T/ka.txt")" -eq $N
check "keep-alive: ... with a decodable FolderSync Status 1 ($ok)" test "$ok" -eq $N
check "keep-alive: ... on one TCP connection ($(awk '{ s += $2 } END { print s }' "$T/ka.txt") connect)" \
	test "$(awk '{ s += $2 } END { print s }' "$T/ka.txt")" -eq 1
n=$(sogo_seen "POST /SOGo/Microsoft-Server-ActiveSync\\?[^\"]*DeviceId=$KA&")
check "keep-alive: SOGo received exactly $N ($n): none lost, none replayed" test "$n" -eq $N
n=$(grep -c "event=access .*device=\"$KA\".*backend=sogo status=200" "$T/gw.log")
check "keep-alive: the gateway logged exactly $N relayed requests ($n)" test "$n" -eq $N

# b) pipelined: OPTIONS and FolderSync alternating, all in one write
PL=EgPipeline1
auth=$(printf 'alice:secret' | base64)
files=()
for i in $(seq $N); do
	f=$T/pl$i.http
	if [ $((i % 2)) -eq 1 ]; then
		printf 'OPTIONS %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n\r\n' \
			"$EASQ&DeviceId=$PL&Cmd=Options" "$auth" >"$f"
	else
		{
			printf 'POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n' \
				"$EASQ&DeviceId=$PL&Cmd=FolderSync" "$auth"
			printf 'MS-ASProtocolVersion: 14.1\r\nX-MS-PolicyKey: 0\r\n'
			printf 'Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: %d\r\n\r\n' \
				"$(stat -c %s "$T/foldersync.wbxml")"
			cat "$T/foldersync.wbxml"
		} >"$f"
	fi
	files+=("$f")
done
SENT=$((SENT + N))
python3 "$EG_ROOT/tests/integration/tlsreplay.py" --port "$GW_PORT" --cafile "$PKI/root.pem" \
	--mode pipeline "${files[@]}" >"$T/pl.jsonl" 2>"$T/pl.err"
order=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print("%s:%s" % (r.get("status"), "empty" if r.get("body_len", 0) == 0 else "body"), end=" ")
' "$T/pl.jsonl")
want=$(for i in $(seq $N); do [ $((i % 2)) -eq 1 ] && echo -n "200:empty " || echo -n "200:body "; done)
check "pipelined: $N answers in order on one connection ($order)" test "$order" = "$want"
n=$(sogo_seen "(OPTIONS|POST) /SOGo/Microsoft-Server-ActiveSync\\?[^\"]*DeviceId=$PL&")
check "pipelined: SOGo received exactly $N ($n)" test "$n" -eq $N

# Everything: SOGo saw every EAS request once, and nothing else (health checks are GETs).
n=$(sogo_seen '(OPTIONS|POST) /SOGo/Microsoft-Server-ActiveSync')
check "SOGo logged exactly the $SENT EAS requests sent through the gateway ($n)" test "$n" -eq "$SENT"
check "gateway still up and SOGo still serving" \
	test "$(eas -o /dev/null -w '%{http_code}' -u alice:secret -X OPTIONS "$(GWURL /Microsoft-Server-ActiveSync)")" = 200
check "no sanitizer or crash report in the gateway log" \
	lacks -qE "Sanitizer|runtime error:|event=worker_exit .*signal=" "$T/gw.log"

if [ "$EG_FAILS" -gt 0 ]; then
	sogo_log_tail 25
	echo "  --- gw.log (tail) ---"
	tail -n 15 "$T/gw.log" | sed 's/^/  | /'
fi
finish
