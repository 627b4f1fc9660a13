#!/usr/bin/env bash
# lifecycle.sh - install, upgrade, remove and purge the easgate package on
# the system this runs on, and check what an admin relies on at each step.
# Run inside a throwaway system: t_deb.sh runs it in a chroot over an overlay
# of the host's root; the systemd round runs it in a QEMU guest.
#
#   lifecycle.sh V1.deb V2.deb [PKI_DIR]
#
# V1.deb is a real build (easgated --version must print its version). V2.deb
# is any higher version of the same package (t_deb.sh repacks V1 with a new
# version and a changed conffile, which is what makes dpkg ask about an edited
# conffile). PKI_DIR (root.pem, server.pem, server.key) lets the installed
# daemon check the installed configuration for real.
# EG_DEB_INSTALL="apt-get install -y" installs with apt instead of dpkg -i.
# Prints PASS/FAIL lines; exits 1 if any check failed.
set -uo pipefail
v1=$1 v2=$2 pki=${3:-}
fails=0
pass() { printf '  PASS  %s\n' "$*"; }
fail() {
	fails=$((fails + 1))
	printf '  FAIL  %s\n' "$*"
}
check() {
	local d=$1
	shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}
export DEBIAN_FRONTEND=noninteractive
install_deb() { # the admin's edits to conffiles win, without a prompt
	if [ -n "${EG_DEB_INSTALL:-}" ]; then
		$EG_DEB_INSTALL -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$1"
	else
		dpkg --force-confdef --force-confold -i "$1"
	fi
}
pkgver() { dpkg-deb -f "$1" Version; }
installed_ver() { dpkg-query -W -f '${Status} ${Version}' easgate 2>/dev/null; }
conf=/etc/easgate/easgate.conf
state=/var/lib/easgate

# --- install ---------------------------------------------------------------------
out=$(install_deb "$v1" 2>&1)
rc=$?
check "install $(basename "$v1") (exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || echo "$out" | tail -20
check "dpkg says installed, version $(pkgver "$v1")" \
	test "$(installed_ver)" = "install ok installed $(pkgver "$v1")"
check "easgated --version prints the package version" \
	test "$(/usr/sbin/easgated --version)" = "easgated $(pkgver "$v1")"
check "easctl is on PATH and answers help" bash -c 'easctl help | grep -q "^commands: "'
check "the easgate system user and group exist (sysusers)" \
	bash -c 'getent passwd easgate | grep -q "^easgate:x:[0-9]*:[0-9]*:.*:/var/lib/easgate:" && getent group easgate >/dev/null'
uid=$(id -u easgate 2>/dev/null || echo none)
check "easgate is a system account (uid $uid < 1000)" test "$uid" != none -a "${uid:-1000}" -lt 1000
check "$conf is a conffile" bash -c "dpkg-query -W -f '\${Conffiles}' easgate | grep -q '^ $conf '"
check "/etc/easgate/tls exists, root-only (0700)" test "$(stat -c %a /etc/easgate/tls 2>/dev/null)" = 700
check "the unit is installed as /lib/systemd/system/easgate.service" \
	grep -q '^ExecStart=/usr/sbin/easgated -c /etc/easgate/easgate.conf$' /lib/systemd/system/easgate.service
check "the unit is not enabled on install (the sample config is not yet usable)" \
	test ! -e /etc/systemd/system/multi-user.target.wants/easgate.service
check "bash completion for easctl is installed" test -s /usr/share/bash-completion/completions/easctl
check "sysusers and tmpfiles entries are installed" \
	test -s /usr/lib/sysusers.d/easgate.conf -a -s /usr/lib/tmpfiles.d/easgate.conf
if [ -n "$pki" ]; then
	out=$(/usr/sbin/easgated --check-config -c "$conf" --tls-cert "$pki/server.pem" \
		--tls-key "$pki/server.key" --trust-file "$pki/root.pem" 2>&1)
	check "the installed daemon accepts the installed configuration" grep -q "configuration OK" <<<"$out"
fi

# --- the admin at work: state and an edited conffile --------------------------------
mkdir -p "$state"
echo "inventory rows" >"$state/inventory.db"
echo "0123456789abcdef0123456789abcdef" >"$state/steering.key"
echo "# edited by the admin" >>"$conf"

# --- upgrade -------------------------------------------------------------------------
out=$(install_deb "$v2" 2>&1)
rc=$?
check "upgrade to $(pkgver "$v2") (exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || echo "$out" | tail -20
check "dpkg says installed, version $(pkgver "$v2")" \
	test "$(installed_ver)" = "install ok installed $(pkgver "$v2")"
check "upgrade kept the inventory and the steering secret" \
	bash -c "grep -q 'inventory rows' $state/inventory.db && test -s $state/steering.key"
check "upgrade kept the admin's edit of $conf" grep -q "^# edited by the admin" "$conf"
if ! cmp -s <(dpkg-deb --fsys-tarfile "$v1" | tar -xOf - ".$conf") \
	<(dpkg-deb --fsys-tarfile "$v2" | tar -xOf - ".$conf"); then
	check "...and put the new sample beside it ($conf.dpkg-dist)" test -f "$conf.dpkg-dist"
fi

# --- remove, then purge ----------------------------------------------------------------
out=$(dpkg -r easgate 2>&1)
rc=$?
check "remove (exit $rc)" test "$rc" -eq 0
check "remove took the binaries" test ! -e /usr/sbin/easgated -a ! -e /usr/bin/easctl
check "remove kept the configuration and the state" \
	bash -c "grep -q '^# edited by the admin' $conf && test -s $state/inventory.db"
out=$(dpkg -P easgate 2>&1)
rc=$?
check "purge (exit $rc)" test "$rc" -eq 0
check "purge removed the state ($state)" test ! -e "$state"
check "purge removed the configuration (/etc/easgate)" test ! -e /etc/easgate
check "dpkg no longer knows the package" bash -c '! dpkg-query -W easgate >/dev/null 2>&1 || [ -z "$(dpkg-query -W -f "\${Status}" easgate | grep -v "not-installed")" ]'
echo "lifecycle: $fails failed"
[ "$fails" -eq 0 ]
