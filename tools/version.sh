#!/bin/sh
# version.sh - the one version string of easgate, for easgated --version and
# the Debian package (make deb writes it into debian/changelog).
#
#   VERSION (the release base)                      0.9.0
#   in a git checkout: base+git<date>.<n>.<hash>    0.9.0+git20261207.38.31f258d
#   and ".dirty" when tracked files differ from HEAD
#
# <date> is the commit date (UTC) of HEAD, <n> the number of commits up to
# HEAD: dpkg compares versions left to right, so a later commit always sorts
# higher, even two on one day (the hash alone would not).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
base=$(cat "$root/VERSION")
if git -C "$root" rev-parse --verify -q HEAD >/dev/null 2>&1; then
	date=$(TZ=UTC0 git -C "$root" log -1 --format=%cd --date=format-local:%Y%m%d HEAD)
	n=$(git -C "$root" rev-list --count HEAD)
	hash=$(git -C "$root" rev-parse --short=7 HEAD)
	dirty=
	git -C "$root" diff-index --quiet HEAD -- 2>/dev/null || dirty=.dirty
	echo "$base+git$date.$n.$hash$dirty"
else
	echo "$base"
fi
