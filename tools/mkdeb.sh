#!/usr/bin/env bash
# mkdeb.sh - `make deb`: build the Debian package from this tree.
#
#   tools/mkdeb.sh [OUTDIR]        (default build/deb)
#
# Copies the tree (tracked and new files, as git sees them; everything but
# build/ outside git) to OUTDIR/easgate-<version>/, gives debian/changelog the
# version tools/version.sh derives, and runs `dpkg-buildpackage -us -uc -b`
# there. dpkg-buildpackage puts its results next to the tree, so they land in
# OUTDIR: easgate_<version>_<arch>.deb, easgate-dbgsym_<version>_<arch>.deb,
# .buildinfo, .changes. Prints the path of the .deb last.
#
# dpkg-buildpackage -us -uc -b also works in a checkout itself (results in
# ../, version from the committed debian/changelog): debian/rules builds in
# debian/build and never touches build/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-build/deb}
case $out in /*) ;; *) out=$root/$out ;; esac
cd "$root"
for c in dpkg-buildpackage dh; do
	command -v "$c" >/dev/null || {
		echo "mkdeb: $c is missing (apt-get install dpkg-dev debhelper; tools/deps.sh does)" >&2
		exit 1
	}
done
version=$(tools/version.sh)
src=$out/easgate-$version
rm -rf "$src"
mkdir -p "$src"
if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		tar --null -T - -cf - | tar -xf - -C "$src"
else
	tar --exclude=./build --exclude=./run -cf - . | tar -xf - -C "$src"
fi
# The changelog's top entry carries the version the binaries print, dated
# by the commit (reproducible), and never before the entry below it.
when=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
prev=$(date -d "$(sed -n 's/^ -- .*>  //p' debian/changelog | head -1)" +%s)
[ "$when" -gt "$prev" ] || when=$((prev + 1))
{
	printf 'easgate (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from %s by make deb.\n\n' \
		"$(git log -1 --format='commit %h (%cs)' 2>/dev/null || echo "a source tree")"
	printf ' -- %s  %s\n\n' "$(sed -n 's/^ -- \(.*>\)  .*/\1/p' debian/changelog | head -1)" \
		"$(date -R -u -d "@$when")"
	cat debian/changelog
} >"$src/debian/changelog"
rm -f "$out"/easgate_"$version"_* "$out"/easgate-dbgsym_"$version"_*
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$out/build-$version.log" 2>&1 || {
	tail -40 "$out/build-$version.log" >&2
	echo "mkdeb: dpkg-buildpackage failed (log: $out/build-$version.log)" >&2
	exit 1
}
rm -rf "$src"
deb=$(ls "$out"/easgate_"$version"_*.deb)
echo "mkdeb: $(ls "$out"/*"$version"*.deb | tr '\n' ' ')"
echo "$deb"
