#!/usr/bin/env bash
# The Debian package (issue #15): `make deb`'s script builds easgate_<v>_<arch>.deb
# and its -dbgsym; lintian finds no error and no warning that is not
# overridden with a written reason; the package holds what an admin needs
# (daemon, easctl, unit, sysusers, tmpfiles, conffile, bash completion) and
# its version is easgated's; the completion completes from easctl's own
# help; and install, upgrade (state and an edited conffile kept), remove and
# purge (state gone) run their maintainer scripts for real, in a chroot over
# an overlay of this host's root (deb/lifecycle.sh, reused in the systemd
# guest).
source "$(dirname "$0")/lib.sh"
need_root
need dpkg-buildpackage dh lintian unshare chroot
make_pki localhost

# --- build ---------------------------------------------------------------------------------
out=$("$EG_ROOT/tools/mkdeb.sh" "$T/deb" 2>&1)
rc=$?
check "tools/mkdeb.sh builds the package (exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || { echo "$out" | tail -30; finish; }
deb=$(tail -1 <<<"$out")
ver=$("$EG_ROOT/tools/version.sh")
arch=$(dpkg --print-architecture)
check "named easgate_${ver}_$arch.deb" test "$(basename "$deb")" = "easgate_${ver}_$arch.deb"
dbg=$T/deb/easgate-dbgsym_${ver}_$arch.deb
check "and its debug symbols easgate-dbgsym_${ver}_$arch.deb" test -s "$dbg"

# --- lintian -------------------------------------------------------------------------------
lint=$(lintian -I --no-tag-display-limit "$T"/deb/*.changes 2>&1)
check "lintian: no error, no warning (overrides have reasons)" bash -c '! grep -E "^[EW]: " <<<"$0"' "$lint"
grep -E "^[EW]: " <<<"$lint" | sed 's/^/        /'
check "lintian: not a word about the man pages, at any level" \
	bash -c '! grep -E "^[EWI]: .*(manpage|manual-page|groff)" <<<"$0"' "$lint"
# Every override is preceded by a comment that says why.
ovr=$EG_ROOT/debian/easgate.lintian-overrides
[ -e "$ovr" ] || ovr=/dev/null # none left since the man pages (no-manual-page)
check "every lintian override has a comment above it" awk '
	/^#/ { c = 1; next }
	/^[[:space:]]*$/ { c = 0; next }
	{ if (!c) bad = 1 }
	END { exit bad }' "$ovr"

# --- contents --------------------------------------------------------------------------------
list=$(dpkg-deb -c "$deb" | awk '{print $1, $6}')
for f in ./usr/sbin/easgated ./usr/bin/easctl ./lib/systemd/system/easgate.service \
	./usr/lib/sysusers.d/easgate.conf ./usr/lib/tmpfiles.d/easgate.conf ./etc/easgate/easgate.conf \
	./usr/share/bash-completion/completions/easctl ./usr/share/easgate/easgate.conf.example \
	./usr/share/doc/easgate/copyright ./usr/share/easgate/web/index.html \
	./usr/share/easgate/web/console.js ./usr/share/easgate/web/console.css \
	./usr/share/man/man8/easgated.8.gz ./usr/share/man/man8/easctl.8.gz \
	./usr/share/man/man5/easgate.conf.5.gz; do
	check "the package holds $f" grep -q " $f\$" <<<"$list"
done
check "easgated and easctl are executable (rwxr-xr-x)" \
	test "$(grep -cE '^-rwxr-xr-x \./usr/s?bin/eas(gated|ctl)$' <<<"$list")" -eq 2
check "conffiles: /etc/easgate/easgate.conf" \
	test "$(dpkg-deb -I "$deb" conffiles 2>/dev/null)" = /etc/easgate/easgate.conf
x=$T/x
dpkg-deb -x "$deb" "$x"
check "the packaged config serves the console's pages from the package" \
	grep -q '^ *web_assets = "/usr/share/easgate/web";' "$x/etc/easgate/easgate.conf"
check "the console's charts: libjs-chart.js recommended ($(dpkg-deb -f "$deb" Recommends))" \
	grep -qw libjs-chart.js <<<"$(dpkg-deb -f "$deb" Recommends)"
check "the packaged easgated prints the package version" \
	test "$("$x/usr/sbin/easgated" --version)" = "easgated $(dpkg-deb -f "$deb" Version)"
check "the package version is tools/version.sh's" test "$(dpkg-deb -f "$deb" Version)" = "$ver"
bid=$(readelf -n "$x/usr/sbin/easgated" | sed -n 's/.*Build ID: \([0-9a-f]*\)/\1/p')
check "easgated is stripped (no .debug_info)" bash -c '! readelf -S "$0" | grep -q "\.debug_info"' "$x/usr/sbin/easgated"
check "the dbgsym package holds easgated's debug info (build-id $bid)" \
	grep -q "usr/lib/debug/.build-id/${bid:0:2}/${bid:2}.debug" <<<"$(dpkg-deb -c "$dbg")"
unit=$x/lib/systemd/system/easgate.service
check "the unit runs the packaged paths" bash -c \
	'grep -q "^ExecStartPre=/usr/sbin/easgated --check-config -c /etc/easgate/easgate.conf$" "$0" && ! grep -q "@[A-Z]*@" "$0"' "$unit"
hard=$(readelf -d "$x/usr/sbin/easgated"; readelf -h "$x/usr/sbin/easgated")
check "easgated is hardened (PIE, BIND_NOW)" bash -c 'grep -q "DYN (Position-Independent" <<<"$0" && grep -qE "FLAGS.*BIND_NOW|NOW" <<<"$0"' "$hard"

# --- bash completion, from easctl's own help ------------------------------------------------
comp() { # comp WORDS...: what the completion offers for the last word
	PATH=$x/usr/bin:$PATH bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));
		_easctl; echo "${COMPREPLY[*]}"' _ "$x/usr/share/bash-completion/completions/easctl" "$@"
}
check "completion: 'easctl ' offers every command of 'easctl help'" test "$(comp easctl '')" = \
	"$("$x/usr/bin/easctl" help | sed -n 's/^commands: //p')"
check "completion: 'easctl dev' -> devices device" test "$(comp easctl dev)" = "devices device"
check "completion: 'easctl device ' -> its subcommands" \
	test "$(comp easctl device '')" = "show history allow approve block quarantine clear remove"
check "completion: 'easctl a' -> audit admin" test "$(comp easctl a)" = "audit admin"
check "completion: 'easctl h' -> history help" test "$(comp easctl h)" = "history help"
check "completion: 'easctl admin ' -> passwd" test "$(comp easctl admin '')" = "passwd"
check "completion: 'easctl audit --' -> --before --format --limit" \
	test "$(comp easctl audit --)" = "--before --format --limit"
check "completion: 'easctl devices --un' -> --unauthenticated" \
	test "$(comp easctl devices --un)" = "--unauthenticated"
check "completion: 'easctl rules d' -> dryrun" test "$(comp easctl rules d)" = "dryrun"
check "completion: 'easctl versions ' -> list incubating approve revoke" \
	test "$(comp easctl versions '')" = "list incubating approve revoke"
check "completion: 'easctl rules t' -> test" test "$(comp easctl rules t)" = "test"
check "completion: 'easctl devices --fo' -> --format" test "$(comp easctl devices --fo)" = "--format"
check "completion: 'easctl devices --format ' -> csv json table" \
	test "$(comp easctl devices --format '')" = "csv json table"
check "completion: 'easctl -s SOCK thr' -> throttle" test "$(comp easctl -s /run/x.sock thr)" = "throttle"
check "completion: 'easctl help cert' -> certcheck" test "$(comp easctl help cert)" = "certcheck"

# --- install, upgrade, remove, purge in a throwaway root ---------------------------------------
# V2: the same files with a higher version and a changed sample config, as a
# real upgrade would bring.
r2=$T/v2
dpkg-deb -R "$deb" "$r2"
sed -i "s/^Version: .*/Version: $ver+t2/" "$r2/DEBIAN/control"
echo "# a setting new in the next version" >>"$r2/etc/easgate/easgate.conf"
(cd "$r2" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$r2/DEBIAN/md5sums"
deb2=$T/easgate_${ver}+t2_$arch.deb
dpkg-deb -b -Zxz "$r2" "$deb2" >/dev/null
check "V2 ($ver+t2) built by repacking" test -s "$deb2"
out=$(unshare --mount --propagation private bash -c '
	set -e
	T=$1 deb=$2 deb2=$3 pki=$4 lc=$5
	mkdir -p "$T/ovl" "$T/root"
	mount -t tmpfs -o size=1g tmpfs "$T/ovl"
	mkdir "$T/ovl/up" "$T/ovl/work"
	mount -t overlay overlay -o "lowerdir=/,upperdir=$T/ovl/up,workdir=$T/ovl/work" "$T/root"
	mount -t proc proc "$T/root/proc"
	mkdir -p "$T/root/tmp/eg-deb"
	cp "$deb" "$deb2" "$lc" "$T/root/tmp/eg-deb/"
	cp -r "$pki" "$T/root/tmp/eg-deb/pki"
	chroot "$T/root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin bash /tmp/eg-deb/lifecycle.sh \
		"/tmp/eg-deb/$(basename "$deb")" "/tmp/eg-deb/$(basename "$deb2")" /tmp/eg-deb/pki
' _ "$T" "$deb" "$deb2" "$PKI" "$EG_ROOT/tests/integration/deb/lifecycle.sh" 2>&1)
rc=$?
echo "$out" | grep -E '^  (PASS|FAIL)' | sed 's/^  /  chroot: /'
EG_PASSES=$((EG_PASSES + $(grep -c '^  PASS' <<<"$out")))
check "install/upgrade/remove/purge in the chroot (lifecycle exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || echo "$out" | grep -vE '^  (PASS|FAIL)' | tail -20
check "the host is untouched (no easgate package installed here)" \
	bash -c '! dpkg-query -W -f "\${Status}" easgate 2>/dev/null | grep -q "ok installed"'
finish
