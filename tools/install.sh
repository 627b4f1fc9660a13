#!/usr/bin/env bash
# install.sh - `make install`: put easgate where a Debian system expects it.
#
#   tools/install.sh DESTDIR PREFIX [BUILD_DIR]     (make install DESTDIR=... PREFIX=...)
#
#   PREFIX/sbin/easgated, PREFIX/bin/easctl
#   PREFIX/lib/systemd/system/easgate.service   (with PREFIX/sbin, SYSCONFDIR filled in)
#   PREFIX/lib/sysusers.d/easgate.conf          (the easgate user and group)
#   PREFIX/lib/tmpfiles.d/easgate.conf          (/sys/fs/bpf/easgate)
#   PREFIX/share/easgate/ios-builds.tsv, easgate.conf.example, web/ (the console)
#   PREFIX/share/man/man8/easgated.8, easctl.8, man5/easgate.conf.5
#   /etc/easgate/easgate.conf                   (only if none exists), /etc/easgate/tls/
#
# The configuration goes to SYSCONFDIR (default /etc, whatever PREFIX is):
# the unit, easctl and the docs all name /etc/easgate. An existing
# easgate.conf is never overwritten; compare it with the example.
# Everything lands under DESTDIR (packaging: nothing on the running system is
# touched). With an empty DESTDIR, as root, it also does what a package's
# postinst would: create the user, the BPF pin directory, and tell systemd.
set -euo pipefail

DESTDIR=${1-}
PREFIX=${2:-/usr/local}
O=${3:-build}
SYSCONFDIR=${SYSCONFDIR:-/etc}
cd "$(dirname "$0")/.."

die() {
	echo "install: $*" >&2
	exit 1
}
case $PREFIX in /*) ;; *) die "PREFIX must be absolute (got '$PREFIX')" ;; esac
PREFIX=${PREFIX%/}
for f in "$O/easgated" "$O/easctl"; do
	[ -x "$f" ] || die "$f is not built (run make first)"
done
for f in "$O/easgate.conf" "$O"/man/{easgated.8,easctl.8,easgate.conf.5}; do
	[ -s "$f" ] || die "$f is not made (run make first)"
done

D=${DESTDIR%/}
UNITDIR=$PREFIX/lib/systemd/system
done_files=()
put() { # put MODE SRC DST: install one file (parents made), remember it
	install -D -m "$1" "$2" "$D$3"
	done_files+=("$3")
}

put 0755 "$O/easgated" "$PREFIX/sbin/easgated"
put 0755 "$O/easctl" "$PREFIX/bin/easctl"
put 0644 data/ios-builds.tsv "$PREFIX/share/easgate/ios-builds.tsv"
# The console's pages (admin.web_assets); chart.js comes from Debian's
# libjs-chart.js (admin.web_chartjs), not from here.
for f in web/*; do
	put 0644 "$f" "$PREFIX/share/easgate/web/$(basename "$f")"
done
# The sample config names the pages where this PREFIX puts them.
conf=$(mktemp)
sed -e "s|/usr/local/share/easgate/web|$PREFIX/share/easgate/web|" "$O/easgate.conf" >"$conf"
put 0644 "$conf" "$PREFIX/share/easgate/easgate.conf.example"
for m in "$O"/man/*.[58]; do
	put 0644 "$m" "$PREFIX/share/man/man${m##*.}/$(basename "$m")"
done
put 0644 packaging/easgate.sysusers "$PREFIX/lib/sysusers.d/easgate.conf"
put 0644 packaging/easgate.tmpfiles "$PREFIX/lib/tmpfiles.d/easgate.conf"

# The unit names the daemon by its installed path.
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
sed -e "s|@SBINDIR@|$PREFIX/sbin|g" -e "s|@PREFIX@|$PREFIX|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" \
	packaging/easgate.service >"$tmp"
grep -q '@[A-Z]*@' "$tmp" && die "unsubstituted placeholder in easgate.service"
put 0644 "$tmp" "$UNITDIR/easgate.service"

# Private keys go in tls/ (root only; the service reads them with
# CAP_DAC_READ_SEARCH). The config itself holds no secret.
install -d -m 0755 "$D$SYSCONFDIR/easgate"
install -d -m 0700 "$D$SYSCONFDIR/easgate/tls"
if [ -e "$D$SYSCONFDIR/easgate/easgate.conf" ]; then
	echo "install: keeping the existing $SYSCONFDIR/easgate/easgate.conf" \
		"(new settings: $PREFIX/share/easgate/easgate.conf.example)"
else
	put 0644 "$conf" "$SYSCONFDIR/easgate/easgate.conf"
fi
rm -f "$conf"

printf 'install: %s\n' "${done_files[@]/#/$D}"

[ -z "$D" ] || exit 0
# Installing into the running system: the steps a package's postinst takes.
if [ "$(id -u)" -eq 0 ]; then
	if command -v systemd-sysusers >/dev/null; then
		systemd-sysusers "$PREFIX/lib/sysusers.d/easgate.conf"
	elif ! getent passwd easgate >/dev/null; then
		useradd --system --user-group --home-dir /var/lib/easgate --no-create-home \
			--shell /usr/sbin/nologin --comment "easgate ActiveSync gateway" easgate
	fi
	if command -v systemd-tmpfiles >/dev/null && [ -d /sys/fs/bpf ]; then
		systemd-tmpfiles --create "$PREFIX/lib/tmpfiles.d/easgate.conf" ||
			echo "install: could not create /sys/fs/bpf/easgate (XDP stays off until it exists)"
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload
	fi
fi
cat <<EOF
install: next steps
  edit $SYSCONFDIR/easgate/easgate.conf (certificates in $SYSCONFDIR/easgate/tls/, backends, rules)
  $PREFIX/sbin/easgated --check-config -c $SYSCONFDIR/easgate/easgate.conf
  systemctl enable --now easgate
EOF
