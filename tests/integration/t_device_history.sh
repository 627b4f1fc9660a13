#!/usr/bin/env bash
# A device's history (`easctl device history`, the console's device page)
# shows each kind of answer a phone got, not only the first: a quarantined
# phone's relayed FolderSync (200), then its Syncs held by the gateway (200)
# and, over its budget, refused (503). The worker folds repeated answers to
# spare the master an event per request; it folded a held Sync into the
# FolderSync before it (same status, same access), so the page said the phone
# had only ever done a FolderSync. One worker here, so every request meets the
# same worker's memory (with two, it happened when the requests' source
# ports sent them to the same worker: CI saw it once).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/console/lib_console.sh"
need curl
make_pki
start_backend cas1 --record "$T/rec" || finish
cat >"$T/gw.conf" <<CONF
policy = { default = "quarantine"; };
throttle = { enabled = true; classes = ( { name = "default"; burst = 4; rate = 0.2; } ); };
CONF
GW_WORKERS=1 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
ctl() { "$EASCTL" -s "$CTL" "$@"; }

st=$(phone dave DAVEDEV Android "Android/4.4.2-EAS-1.3" FolderSync)
check "the quarantined phone's FolderSync is relayed (HTTP $st)" test "$st" = 200
sts=""
for _ in $(seq 6); do sts="$sts $(phone dave DAVEDEV Android "Android/4.4.2-EAS-1.3")"; done
check "its Syncs are held (200) then refused over its budget (503):$sts" \
	bash -c '[[ "$0" == *200* && "$0" == *503* ]]' "$sts"
# The master hears the worker's events asynchronously: wait for the 503.
for _ in $(seq 50); do
	ctl device history DAVEDEV --user dave --format json >"$T/hist.json" 2>&1
	grep -q '"status": 503' "$T/hist.json" && break
	sleep 0.1
done
answers=$(python3 -c '
import json, sys
h = json.load(open(sys.argv[1]))
print(" ".join("%s:%d:%s" % (e["command"], e["status"], e["access"]) for e in h if e["kind"] == "answer"))
' "$T/hist.json" 2>&1)
check "its history lists the FolderSync, a held Sync and a refused Sync, in that order ($answers)" \
	bash -c '[[ " $0 " == *" FolderSync:200:quarantine "*"Sync:200:quarantine "*"Sync:503:quarantine "* ]]' "$answers"
# Folding still holds: six Syncs did not make six entries.
check "repeated identical answers are folded ($(wc -w <<<"$answers") answers for 7 requests)" \
	test "$(wc -w <<<"$answers")" -le 4
finish
