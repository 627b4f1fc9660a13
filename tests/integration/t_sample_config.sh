#!/usr/bin/env bash
# The documented sample config (build/easgate.conf, made by eg-doc) is valid as shipped,
# once its certificate paths point at real files; and a broken copy is refused
# with file:line errors by --check-config.
source "$(dirname "$0")/lib.sh"
make_pki
sed -e "s|/etc/easgate/tls/server.pem|$PKI/server.pem|; s|/etc/easgate/tls/server.key|$PKI/server.key|" \
	-e "s|trust_file = \"\";|trust_file = \"$PKI/root.pem\";|" \
	"$O/easgate.conf" >"$T/easgate.conf"
out=$("$EASGATED" --check-config -c "$T/easgate.conf" 2>&1)
check "the sample easgate.conf passes --check-config" grep -q "configuration OK" <<<"$out"
sed -e 's/default = "allow";/default = "sometimes";/' -e 's/burst = 300;/burst = "lots";/' \
	"$T/easgate.conf" >"$T/broken.conf"
out=$("$EASGATED" --check-config -c "$T/broken.conf" 2>&1)
rc=$?
check "a broken copy is refused (exit $rc)" test "$rc" -ne 0
line=$(grep -n 'default = "sometimes"' "$T/broken.conf" | cut -d: -f1)
check "...naming policy.default at line $line" grep -q "broken.conf:$line: policy.default must be" <<<"$out"
line=$(grep -n 'burst = "lots"' "$T/broken.conf" | cut -d: -f1)
check "...and the throttle burst at line $line, in the same run" \
	grep -q "broken.conf:$line: 'burst' must be a number" <<<"$out"
bad_rule="$T/badrule.conf"
sed -e 's|^  rules = (|  rules = ( "block DeviceOS iz \\"x\\""|' "$T/easgate.conf" >"$bad_rule"
out=$("$EASGATED" --check-config -c "$bad_rule" 2>&1)
line=$(grep -n 'DeviceOS iz' "$bad_rule" | cut -d: -f1)
check "a bad rule is refused with its file:line ($line)" grep -q "badrule.conf:$line: rule:" <<<"$out"
finish
