#!/usr/bin/env bash
# check-layers.sh - the include rules between the folders of user/
# (HACKING.md, "Layout"). The build runs it before it archives the library,
# so a violation fails `make`:
#
#   proto/  pure functions over bytes (parsers, the fuzzed code): its files
#           include headers of proto/ and base/ only
#   base/   what every process uses: base/ and include/ only
#
# A header is found by its file name (every folder is on the include path),
# so a quoted include with a '/' in it is refused too: it could reach any
# folder. A name found nowhere in the tree is a generated file; only those
# listed in GENERATED may be included.
#
# Usage: tools/check-layers.sh [ROOT]   (exit 1 and one line per violation)
set -u
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$ROOT" || exit 2
GENERATED="ios_builds.inc" # from data/ios-builds.tsv, into $(O)/gen

# Where a header lives: its folder under user/, "include", or "" (not in the tree).
home() {
	local hits
	hits=$(cd user && ls -d -- */"$1" 2>/dev/null)
	if [ -n "$hits" ]; then
		echo "${hits%%/*}"
	elif [ -e "include/$1" ]; then
		echo include
	fi
}

bad=0
check() { # FOLDER ALLOWED...
	local dir=$1 f name where ok a
	shift
	for f in user/"$dir"/*.[ch]; do
		[ -e "$f" ] || continue
		while IFS= read -r name; do
			if [[ $name == */* ]]; then
				echo "layers: $f includes \"$name\": name a header by its file name alone"
				bad=1
				continue
			fi
			where=$(home "$name")
			ok=0
			if [ -z "$where" ]; then
				[[ " $GENERATED " == *" $name "* ]] && ok=1
				where="no folder (not a known generated file)"
			else
				for a in "$@"; do [ "$where" = "$a" ] && ok=1; done
			fi
			if [ "$ok" = 0 ]; then
				echo "layers: $f includes $name from $where; $dir/ may include only: $*"
				bad=1
			fi
		done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
	done
}

check proto proto base
check base base include
exit $bad
