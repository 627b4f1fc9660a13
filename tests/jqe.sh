# shellcheck shell=bash
# jqe.sh - jqe, `jq -e` that fails on empty input (sourced; exported, so a
# `bash -c` check sees it too).
#
# jq 1.6 (Debian 12) -e exits 0 when its input holds no JSON value at all,
# so `cmd | jq -e '.x == 1'` passed when cmd printed nothing (failed, or
# dumped an empty map). jqe JQ-ARGS... reads stdin only (pass a file with
# <FILE), exits 4 ("no valid result", as jq -e does for a filter with no
# output) with a note on stderr when stdin is empty or blank, and otherwise
# is jq -e with the same arguments and output.
jqe() {
	local in
	in=$(cat) || return 4
	if [ -z "${in//[[:space:]]/}" ]; then
		echo "jqe: empty input (no JSON value) for: jq -e $*" >&2
		return 4
	fi
	jq -e "$@" <<<"$in"
}
export -f jqe
