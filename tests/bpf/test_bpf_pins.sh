#!/usr/bin/env bash
# test_bpf_pins.sh - what an operator sees: pinned BTF-typed maps, an XDP
# attachment that outlives the daemon, reuse on restart, and a --detach that
# leaves nothing behind.
#
# Usage: tests/bpf/test_bpf_pins.sh [BUILD_DIR]   (default build; needs root)
# Drives `$BUILD_DIR/tests/test_bpf_netns --helper ...` (bpfmaps.c) inside a
# private network namespace, attaching to its loopback (generic XDP). Pins go
# to /sys/fs/bpf/easgate-test-pins-<pid>, never to the daemon's directory.
# nsenter --net is used rather than `ip netns exec`, which would hide the pins.
# Exit: 0 pass, 1 fail, 77 skipped.
set -u
cd "$(dirname "$0")/../.."
O=${1:-build}
HELPER="$O/tests/test_bpf_netns"
# jqe: jq -e that fails on empty input (a bpftool that printed nothing).
source tests/jqe.sh

[ "$(id -u)" -eq 0 ] || { echo "SKIP: test_bpf_pins needs root"; exit 77; }
for t in bpftool jq nsenter ip; do
	command -v "$t" >/dev/null || { echo "SKIP: test_bpf_pins needs $t"; exit 77; }
done
[ -x "$HELPER" ] || { echo "FAIL: $HELPER not built (make $HELPER)"; exit 1; }

NS="egtp-$$"
DIR="/sys/fs/bpf/easgate-test-pins-$$"
fails=0

cleanup() {
	if [ -d "$DIR" ]; then nsenter --net="/var/run/netns/$NS" "$HELPER" --helper detach "$DIR" 2>/dev/null || rm -rf "$DIR"; fi
	ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT

in_ns() { nsenter --net="/var/run/netns/$NS" "$@"; }
ok() { printf '  ok    %s\n' "$1"; }
fail() { printf '  FAIL  %s\n' "$1"; fails=$((fails + 1)); }
check() { # check DESCRIPTION COMMAND...
	local d=$1; shift
	if "$@" >/dev/null 2>&1; then ok "$d"; else fail "$d"; fi
}

# has_fields MAP FIELD...: the JSON dump parses and names every FIELD somewhere.
has_fields() {
	local m=$1; shift
	local keys
	keys=$(bpftool map dump pinned "$DIR/$m" -j | jq -r '[.. | objects | keys[]] | unique | .[]') || return 1
	for f in "$@"; do grep -qx "$f" <<<"$keys" || { echo "$m: no field $f" >&2; return 1; }; done
}

xdp_prog_id() { in_ns bpftool net -j | jqe -r '.[0].xdp[] | select(.devname == "lo") | .id'; }
link_field() { bpftool link show pinned "$DIR/link_xdp_lo" -j | jqe -r ".$1"; }

ip netns add "$NS" || { echo "FAIL: ip netns add"; exit 1; }

# 0. A stale, incompatible pin (as after an upgrade that changed a map) is
#    replaced, not reused and not fatal.
mkdir -p /sys/fs/bpf 2>/dev/null
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mkdir "$DIR" && bpftool map create "$DIR/src_rate" type hash key 16 value 16 entries 16 name src_rate

# 1. First start: nothing to reuse; pins, link and one entry per map.
out=$(in_ns "$HELPER" --helper open "$DIR" lo 0 2>/dev/null)
check "open: fresh maps, generic XDP on lo ($out)" grep -q "reused=0 mode=generic attach=0" <<<"$out"
check "incompatible src_rate pin was replaced" bash -c "bpftool map show pinned '$DIR/src_rate' -j | jqe '.type == \"lru_hash\" and .max_entries != 16'"

# 2. bpftool sees BTF field names in every pinned map.
check "flow_verdict fields" has_fields flow_verdict saddr daddr sport dport action reason hits expires_ns device_key
check "src_block fields" has_fields src_block prefixlen addr action reason expires_ns
check "src_rate fields" has_fields src_rate addr tokens_milli last_ns
check "src_cap fields" has_fields src_cap addr action conns cap expires_ns
check "xdp_cfg fields" has_fields xdp_cfg syn_rate syn_burst ports
check "xdp_stats fields (per CPU)" has_fields xdp_stats cpu packets bytes
check "backends fields" has_fields backends addr port up weight conns name
check "conn_steer fields" has_fields conn_steer steer_key backend worker since_ns
check "workers fields" has_fields workers accepting load
# maglev_table is 65537 plain integers: look one up, check its size and BTF.
check "maglev_table lookup is JSON" bash -c "bpftool map lookup pinned '$DIR/maglev_table' key 0 0 0 0 -j | jqe '.formatted.value == 0'"
check "maglev_table size and BTF" bash -c "bpftool map show pinned '$DIR/maglev_table' -j | jqe '.max_entries == 65537 and .btf_id > 0'"
check "flow entry readable by field" bash -c "bpftool map dump pinned '$DIR/flow_verdict' -j | jqe '.[0].formatted.value.action == 1 and .[0].formatted.value.reason == 1'"

# 3. The process has exited: the program stays attached through the pinned link.
check "ip link shows xdpgeneric after exit" bash -c "nsenter --net=/var/run/netns/$NS ip link show lo | grep -q xdpgeneric"
prog1=$(xdp_prog_id)
link1=$(link_field id)
check "bpftool net shows xdp_gate on lo" test -n "$prog1"
check "the pinned link holds that program" test "$(link_field prog_id)" = "$prog1"

# 4. Restart: all 10 maps reused, the entry is still there, the same link now
#    runs the new program (updated in place, no EBUSY).
out=$(in_ns "$HELPER" --helper check "$DIR" lo 0 2>/dev/null)
check "reopen reuses maps and keeps the entry ($out)" grep -q "reused=10 mode=generic attach=0 entry=1" <<<"$out"
prog2=$(xdp_prog_id)
check "same link, new program ($link1: $prog1 -> $prog2)" test "$(link_field id)" = "$link1" -a "$prog2" != "$prog1" -a "$(link_field prog_id)" = "$prog2"

# 5. Asking for native on lo fails, but enforcement stays (generic restored).
out=$(in_ns "$HELPER" --helper check "$DIR" lo 1 2>/dev/null)
check "native on lo is refused" grep -q "attach=-95" <<<"$out"
check "still attached (generic) after the refused switch" bash -c "nsenter --net=/var/run/netns/$NS ip link show lo | grep -q xdpgeneric"

# 6. --detach: no pin, no directory, no program, no link.
link3=$(link_field id)
check "detach_all succeeds" in_ns "$HELPER" --helper detach "$DIR"
check "pin directory removed" test ! -e "$DIR"
check "no XDP program on lo" bash -c "! nsenter --net=/var/run/netns/$NS ip link show lo | grep -q xdp"
check "bpftool net shows no xdp" bash -c "nsenter --net=/var/run/netns/$NS bpftool net -j | jqe '(.[0].xdp | length) == 0'"
check "the link is gone" bash -c "! bpftool link show id '$link3'"

echo "test_bpf_pins: $fails failed"
[ "$fails" -eq 0 ]
