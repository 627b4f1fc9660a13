#!/usr/bin/env bash
# t_deps.sh - tools/deps.sh against stand-ins for dpkg-query and apt-get (on
# PATH, in this test's directory), so nothing is installed and the host's
# /usr/sbin/policy-rc.d is not touched (EG_POLICY_RC_D points into $T):
#  1. apt-get update fails: deps.sh fails and says so, installs nothing
#  2. it succeeds: the missing package is installed
#  3. in both, the policy-rc.d that keeps package scripts from starting
#     services is gone afterwards (left behind, no service of any package
#     installed later on that machine would start)
#  4. a policy-rc.d that was there before (the admin's) is left alone
set -uo pipefail
source "$(dirname "$0")/lib.sh" "${1:-build}"

mkdir -p "$T/bin"
# dpkg-query: every package installed but "xxd".
cat >"$T/bin/dpkg-query" <<'EOF'
#!/bin/sh
for p; do :; done
[ "$p" = xxd ] && exit 1
printf 'install ok installed'
EOF
# apt-get: records its calls; "update" fails when $T/update-fails exists.
# It also records whether policy-rc.d was in place while it ran.
cat >"$T/bin/apt-get" <<EOF
#!/bin/sh
echo "\$*" >>"$T/apt.calls"
[ -e "$T/rc.d" ] && echo "rc.d present during \$1" >>"$T/apt.calls"
case "\$1" in update) [ -e "$T/update-fails" ] && exit 100 ;; esac
exit 0
EOF
chmod +x "$T/bin/dpkg-query" "$T/bin/apt-get"

deps() { # -> rc; output in $T/deps.out
	PATH="$T/bin:$PATH" EG_POLICY_RC_D="$T/rc.d" EASGATE_DEPS_TEST="" \
		"$EG_ROOT/tools/deps.sh" >"$T/deps.out" 2>&1
}

echo "# 1. apt-get update fails"
: >"$T/update-fails"
: >"$T/apt.calls"
deps
rc=$?
check "deps.sh fails (rc=$rc)" test "$rc" -ne 0
check "it says apt-get update failed" grep -q "apt-get update failed" "$T/deps.out"
check "nothing installed after the failed update" lacks "^install" "$T/apt.calls"
check "policy-rc.d was in place while apt-get ran" grep -q "rc.d present during update" "$T/apt.calls"
check "policy-rc.d removed" test ! -e "$T/rc.d"

echo "# 2. apt-get update works"
rm -f "$T/update-fails"
: >"$T/apt.calls"
deps
rc=$?
check "deps.sh succeeds (rc=$rc)" test "$rc" -eq 0
check "the missing package is installed" grep -q "^install .*xxd" "$T/apt.calls"
check "policy-rc.d in place during the install" grep -q "rc.d present during install" "$T/apt.calls"
check "policy-rc.d removed" test ! -e "$T/rc.d"

echo "# 3. an existing policy-rc.d is the admin's"
printf '#!/bin/sh\nexit 0\n' >"$T/rc.d"
deps
check "deps.sh succeeds" test $? -eq 0
check "the admin's policy-rc.d is still there, unchanged" grep -q "exit 0" "$T/rc.d"
: >"$T/update-fails"
deps
check "deps.sh fails on a failed update" test $? -ne 0
check "the admin's policy-rc.d survives a failed run too" grep -q "exit 0" "$T/rc.d"
finish
