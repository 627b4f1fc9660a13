#!/usr/bin/env bash
# Differential test of easgate's WBXML decoder against libwbxml.
#
# The test_wbxml binary generates N pseudo-random (deterministic) Settings and
# Provision requests as ActiveSync XML, with the DeviceInformation fields it
# expects the decoder to extract. libwbxml's xml2wbxml encodes them, our
# decoder extracts the fields, and libwbxml's wbxml2xml decodes them again so
# the token streams (element names, namespaces, text) can be compared. The
# real capture bodies in tests/data/eas-captures are compared the same way,
# where our name tables cover every element.
#
# Usage: tests/wbxml-diff.sh [BUILD_DIR]   (default build; e.g. build/asan)
# Env:   WBXML_DIFF_N (documents, default 400), WBXML_DIFF_KEEP=1 (keep files)
# Exit:  0 all agree, 1 disagreement or failure, 77 libwbxml tools missing.
set -u
O=${1:-build}
N=${WBXML_DIFF_N:-400}
cd "${0%/*}/.." || exit 1

for tool in xml2wbxml wbxml2xml; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "wbxml-diff: SKIP: $tool not installed (Debian package libwbxml2-utils)"
		exit 77
	fi
done
bin=$O/tests/test_wbxml
if [ ! -x "$bin" ]; then
	echo "wbxml-diff: FAIL: $bin not built (make $bin)"
	exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/wbxml-diff.XXXXXX") || exit 1
if [ "${WBXML_DIFF_KEEP:-0}" = 1 ]; then
	echo "wbxml-diff: keeping $dir"
else
	trap 'rm -rf "$dir"' EXIT
fi

"$bin" --diff-gen "$dir" "$N" || { echo "wbxml-diff: FAIL: generator"; exit 1; }

# Run one libwbxml tool; it must exit 0 and say "succeeded".
run_tool() {
	local out
	if ! out=$("$@" 2>&1) || [[ $out != *succeeded* ]]; then
		echo "wbxml-diff: FAIL: $*"
		echo "$out"
		return 1
	fi
}

for ((i = 0; i < N; i++)); do
	s=$(printf '%s/doc-%04d' "$dir" "$i")
	run_tool xml2wbxml -a -n -o "$s.wbxml" "$s.xml" || exit 1
done
# Generated documents and the real capture bodies, decoded by libwbxml.
for f in "$dir"/*.wbxml; do
	run_tool wbxml2xml -l ACTIVESYNC -m 0 -o "${f%.wbxml}.ref.xml" "$f" || exit 1
done

"$bin" --diff-check "$dir" "$N"
