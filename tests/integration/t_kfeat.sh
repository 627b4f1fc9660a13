#!/usr/bin/env bash
# Kernel features at start: what easgated finds on this kernel (by doing
# each thing), says in its start log and `easctl status`, and how it
# degrades when a feature is missing. Gateway netns as in t_xdp.sh
# (tests/integration/xdp/netns.sh). Run by the kernel matrix on 6.1 and
# 6.12 too (tests/kernel/), where kernel TLS exists.
#  1. Everything the kernel has: XDP native on the veth, SK_REUSEPORT, splice;
#     kernel TLS as an independent probe (ktls_oracle.py) finds it, with the
#     same ciphers; the start log says the same once, and so does
#     `easgated --probe-kernel` (no configuration).
#  2. A kernel without them (EASGATE_TEST_KFEAT_OFF, the test hook, for xdp,
#     reuseport, splice, sockmap, ktls): the gateway starts anyway, says
#     each is off and why, attaches nothing, relays in user space, and a
#     phone still syncs.
#  3. A driver without native XDP (hook: xdp_native), xdp.mode "auto": generic,
#     and status says native was refused.
#  4. What the configuration demands and the kernel cannot give refuses the
#     start with a message that says what to change: xdp.mode = "native" on
#     lo (no native XDP there, for real), and on a kernel that refuses the
#     XDP program (hook: xdp).
# Root only (netns, XDP, bpffs); pins go to /sys/fs/bpf/easgate-test-<pid>.
source "$(dirname "$0")/lib.sh"
need_root
need nsenter ip python3 curl bpftool
source "$EG_ROOT/tests/integration/xdp/netns.sh"
trap 'cleanup; xn_down' EXIT

make_pki gw.xdp.test "$XN_GW_IP"
xn_up || { fail "network namespaces and veth pair"; finish; }
xn_backend cas1 || finish
xn_gateway_conf "$BE_PORT_cas1"

feature() { "$EASCTL" -s "$CTL" status | sed -n "s/^feature $1 //p"; }
detach() { "$EASGATED" --detach -c "$T/gw.conf" >>"$T/detach.log" 2>&1; }
xdp_on_veth() { in_gw ip link show "$XN_GW_IF" | grep -o 'xdp[a-z]*' | head -1; }
phone_options() { # an authenticated OPTIONS through the gateway: 200 from the backend
	in_phone curl -sS -o /dev/null -w '%{http_code}' --cacert "$PKI/root.pem" --max-time 10 \
		-u alice:secret -X OPTIONS "https://$XN_GW_IP/Microsoft-Server-ActiveSync"
}
# refused LOG [NAME=VALUE...]: start with that environment, expecting a
# refusal: the daemon must exit non-zero by itself.
refused() {
	local log=$1 rc
	shift
	nsenter --net="/var/run/netns/$XN_GW" env "$@" timeout 30 "$EASGATED" -c "$T/gw.conf" >"$log" 2>&1
	rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ]
}

# ---- 1. what this kernel has ---------------------------------------------------------
xn_gateway || finish
st=$("$EASCTL" -s "$CTL" status)
check "status names the kernel ($(uname -r))" grep -qx "kernel $(uname -r)" <<<"$st"
check "xdp on, native on the veth ($(feature xdp))" test "$(feature xdp)" = "on $XN_GW_IF=native"
check "ip link agrees: xdp (driver mode) on veth-gw" test "$(xdp_on_veth)" = xdp
check "reuseport on, one listener group ($(feature reuseport))" test "$(feature reuseport)" = "on groups=1"
check "splice on" test "$(feature splice)" = on
check "sockmap, sk_skb, sk_msg on" test "$(feature sockmap)$(feature sk_skb)$(feature sk_msg)" = ononon
oracle=$(python3 "$EG_ROOT/tests/integration/ktls_oracle.py") || fail "ktls_oracle.py could not run"
kt=$(feature ktls)
case $oracle in
none*)
	check "ktls off, as the independent probe finds (${oracle#none })" grep -q '^off why=' <<<"$kt" ;;
*)
	check "ktls on with the ciphers the independent probe finds ($oracle)" \
		test "${kt%% note=*}" = "on ciphers=$oracle versions=1.2,1.3"
	check "...and whether phone connections use it, and why (${kt#* note=})" \
		grep -qE ' note="(used for phone connections|not used, not cheaper here): tls.ktls = auto, measured kernel [0-9.]+ vs OpenSSL [0-9.]+ CPU s/GB' <<<"$kt" ;;
esac
check "start log: one kernel_features line, all of the above" \
	test "$(grep -c "event=kernel_features kernel=$(uname -r) xdp=on reuseport=on splice=on sockmap=on sk_skb=on sk_msg=on ktls=$([ "${oracle%% *}" = none ] && echo off || echo on)\$" "$T/gw.log")" = 1
probe=$("$EASGATED" --probe-kernel 2>>"$T/probe.log")
check "--probe-kernel names the kernel" grep -qx "kernel $(uname -r)" <<<"$probe"
for f in reuseport splice sockmap sk_skb sk_msg ktls; do
	p=$(sed -n "s/^feature $f //p" <<<"$probe")
	# the daemon's ktls note says whether its connections use it: not a probe's
	check "--probe-kernel agrees with the daemon on $f ($p)" test "$p" = "$(feature "$f" | sed 's/ groups=1$//; /^on ciphers=/s/ note=.*//')"
done
check "--probe-kernel: XDP loads and attaches to lo in its own namespace" \
	grep -q '^feature xdp on lo=generic' <<<"$probe"
check "SIGTERM" xn_stop_gateway
detach || fail "detach after phase 1"

# ---- 2. a kernel without them ---------------------------------------------------------
export EASGATE_TEST_KFEAT_OFF=xdp,reuseport,splice,sockmap,ktls
: >"$T/gw.log"
xn_gateway || finish
hook='why="turned off by EASGATE_TEST_KFEAT_OFF (test hook)"'
for f in xdp reuseport splice sockmap ktls; do
	check "without $f: status says off and why" test "$(feature "$f")" = "off $hook"
	check "without $f: the start log says so" grep -q "event=kernel_feature_off name=$f $hook" "$T/gw.log"
done
check "status: xdp off" grep -qx "xdp off" <<<"$("$EASCTL" -s "$CTL" status)"
check "nothing attached to veth-gw" test -z "$(xdp_on_veth)"
check "bodies relay in user space" grep -q "^relay tls_legs=user plaintext_legs=user " <<<"$("$EASCTL" -s "$CTL" status)"
check "a phone still gets its answer (200)" test "$(phone_options)" = 200
check "SIGTERM" xn_stop_gateway
unset EASGATE_TEST_KFEAT_OFF
detach

# ---- 3. a driver without native XDP, xdp.mode auto --------------------------------------
export EASGATE_TEST_KFEAT_OFF=xdp_native
: >"$T/gw.log"
xn_gateway || finish
check "auto: generic instead ($(feature xdp))" \
	test "$(feature xdp)" = "on $XN_GW_IF=generic note=\"$XN_GW_IF: native refused (Operation not supported), generic used\""
check "ip link agrees: xdpgeneric on veth-gw" test "$(xdp_on_veth)" = xdpgeneric
check "a phone gets its answer (200)" test "$(phone_options)" = 200
check "SIGTERM" xn_stop_gateway
unset EASGATE_TEST_KFEAT_OFF
detach

# ---- 4. what the configuration demands -------------------------------------------------
xn_gateway_conf "$BE_PORT_cas1" '  mode = "native";'
sed -i "s/interfaces = \[ \"$XN_GW_IF\" \]/interfaces = [ \"lo\" ]/" "$T/gw.conf"
check "xdp.mode native on lo (no native XDP there): the start is refused" refused "$T/native-lo.log"
check "...saying what to change" grep -q \
	'event=xdp_attach_failed iface=lo mode=native error=.* fix="the driver of lo has no native XDP here: set xdp.mode = \\"auto\\" (native where the driver has it, generic elsewhere) or \\"generic\\""' \
	"$T/native-lo.log"
check "...and nothing is left attached to lo" bash -c "! nsenter --net=/var/run/netns/$XN_GW ip link show lo | grep -q xdp"
detach
xn_gateway_conf "$BE_PORT_cas1" '  mode = "generic";'
check "xdp.mode generic, the kernel refuses the program: the start is refused" \
	refused "$T/refused.log" EASGATE_TEST_KFEAT_OFF=xdp
check "...saying what to change" grep -q \
	'event=xdp_unavailable mode=generic why="turned off by EASGATE_TEST_KFEAT_OFF (test hook)" fix="this kernel refused the XDP program: set xdp.mode = \\"auto\\" to run without it, or empty xdp.interfaces"' \
	"$T/refused.log"
finish
