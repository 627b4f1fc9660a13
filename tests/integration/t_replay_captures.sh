#!/usr/bin/env bash
# All 129 real client requests (tests/data/eas-captures) replayed through the
# gateway on one kept-alive TLS connection reach the backend byte-identical:
# the recorded request equals the capture plus exactly the two headers the
# gateway adds (X-Forwarded-For, X-Forwarded-Proto), nothing else changed.
# By default all 129 do, the debug build's "Dbg-Nine526977DA8D36" included;
# with strict_device_id = true (Exchange's rule: letters and digits), that one
# capture is answered 400 (EAS 108) and never reaches the backend.
source "$(dirname "$0")/lib.sh"
need python3 curl
make_pki
CAP=$EG_ROOT/tests/data/eas-captures
mapfile -t files < <(ls "$CAP"/*.http | sort)
total=${#files[@]}

run_replay() { # $1 = label; uses $T/rec-$1 and $T/out-$1.jsonl
	python3 "$EG_ROOT/tests/integration/tlsreplay.py" --port "$GW_PORT" --cafile "$PKI/root.pem" \
		--mode keepalive "${files[@]}" >"$T/out-$1.jsonl" || fail "$1: tlsreplay.py exited $?"
}

compare() { # $1 = label -> $T/cmp-$1: "identical refused other" (empty if it failed)
	python3 - "$T/out-$1.jsonl" "$T/rec-$1" >"$T/cmp-$1" <<'PY' || fail "$1: the comparison script exited $?"
import json, sys, os
out, rec = sys.argv[1], sys.argv[2]
ident = refused = other = 0
for line in open(out):
    r = json.loads(line)
    sent = open(r["file"], "rb").read()
    seq = r["headers"].get("x-request-seq")
    if r["status"] == 400 and not seq:
        refused += 1
        continue
    if not seq:
        other += 1
        print("no backend seq for", r["file"], r["status"], file=sys.stderr)
        continue
    got = open(os.path.join(rec, seq + ".req"), "rb").read()
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    added = [l for l in lines if l.startswith(b"X-Forwarded-For: ") or l.startswith(b"X-Forwarded-Proto: ")]
    kept = [l for l in lines if l not in added]
    rebuilt = b"\r\n".join(kept) + b"\r\n\r\n" + body
    ok = rebuilt == sent and len(added) == 2 and b"X-Forwarded-Proto: https" in added
    if ok:
        ident += 1
    else:
        other += 1
        print("DIFF", r["file"], file=sys.stderr)
print(ident, refused, other)
PY
}

# 1) strict_device_id = true (Exchange's rule)
echo "strict_device_id = true;" >"$T/strict.conf"
start_backend cas1 --record "$T/rec-strict" || finish
start_gateway -c "$T/strict.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
run_replay strict
compare strict
read -r ident refused other <"$T/cmp-strict"
check "strict: $ident of $total captures reach the backend byte-identical" test "$ident" -eq $((total - 1))
check "strict: the DeviceId with '-' is refused 400 (EAS 108) by the gateway ($refused)" \
	test "$refused" -eq 1
check "strict: nothing else differs ($other)" test "$other" -eq 0
check "the refused request never reached the backend (health checks aside)" \
	test "$(grep -l '^target=/Microsoft-Server-ActiveSync' "$T/rec-strict"/*.meta | wc -l)" -eq $((total - 1))
check "refusal carries X-MS-ASError: 108" \
	grep -q '"x-ms-aserror": "108"' "$T/out-strict.jsonl"
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null

# 2) the default
unset GW_PORT
start_backend cas2 --record "$T/rec-default" || finish
start_gateway --backend "cas2=127.0.0.1:$BE_PORT_cas2,health=/health" || finish
run_replay default
compare default
read -r ident refused other <"$T/cmp-default"
check "default: all $ident of $total captures reach the backend byte-identical" test "$ident" -eq "$total"

# 3) the same captures, every byte dribbled separately to the gateway, arrive intact too
python3 "$EG_ROOT/tests/integration/tlsreplay.py" --port "$GW_PORT" --cafile "$PKI/root.pem" \
	--dribble 7 "$CAP/754-R12-Provision.http" "$CAP/754-R90-Sync.http" >"$T/out-dribble.jsonl"
check "requests dribbled 7 bytes at a time are relayed (2 x 200)" \
	test "$(grep -c '"status": 200' "$T/out-dribble.jsonl")" -eq 2

# 4) pipelined: 10 requests in one write, answered in order
python3 "$EG_ROOT/tests/integration/tlsreplay.py" --port "$GW_PORT" --cafile "$PKI/root.pem" \
	--mode pipeline "${files[@]:0:10}" >"$T/out-pipe.jsonl"
check "10 pipelined requests answered in order" \
	test "$(grep -c '"status": 200' "$T/out-pipe.jsonl")" -eq 10
finish
