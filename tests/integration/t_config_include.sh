#!/usr/bin/env bash
# An error in an @include'd file names that file and its own line, from
# `easgated --check-config` and from `easctl reload` (its answer and `easctl
# status`'s last_reload_error), whichever stage finds it: libconfig's syntax
# error, an unknown key, an out-of-range value, a policy rule (its line
# found in the included text, below which libconfig ends the list). Two
# includes deep; the top file's own errors still name the top file.
# Relative @include names are opened from the working directory (the
# product sets no libconfig include directory) and named as written; a
# missing one says so. The error used to name the top file with the included
# file's line.
source "$(dirname "$0")/lib.sh"
need curl
make_pki
mkdir -p "$T/inc"

# check_config ARGS...: what --check-config says in $out, its exit code in $rc.
check_config() {
	"$EASGATED" --check-config "$@" >"$T/check.out" 2>&1
	rc=$?
	out=$(cat "$T/check.out")
}

# conf_set TOP MID LEAF: write the three files ($T/top.conf, $T/inc/*.conf).
conf_set() {
	printf '%s' "$1" >"$T/top.conf" && printf '%s' "$2" >"$T/inc/mid.conf" &&
		printf '%s' "$3" >"$T/inc/leaf.conf" || fail "cannot write the configs"
}

# one_case DESC PFX: the cases with @include names prefixed by PFX, from the
# current directory.
one_case() {
	local desc=$1 pfx=$2
	local top="workers = 1;
@include \"${pfx}mid.conf\"
bogus_top = 1;
"
	local mid="# mid
timeouts = {
  idle = -5;
};
@include \"${pfx}leaf.conf\"
"
	conf_set "$top" "$mid" '# leaf

limits = { max_head = 99999999; };
leaf_unknown = 3;
'
	check_config -c "$T/top.conf"
	check "$desc: refused (exit $rc)" test "$rc" -eq 1
	check "$desc: the mid file's bad value names ${pfx}mid.conf:3" \
		grep -q "^${pfx}mid.conf:3: 'idle' = -5 s is out of range" <<<"$out"
	check "$desc: the leaf's bad value names ${pfx}leaf.conf:3" \
		grep -q "^${pfx}leaf.conf:3: 'max_head' = 99999999 is out of range" <<<"$out"
	check "$desc: the leaf's unknown key names ${pfx}leaf.conf:4" \
		grep -q "^${pfx}leaf.conf:4: unknown setting 'leaf_unknown'" <<<"$out"
	check "$desc: the top file's own unknown key names top.conf:3" \
		grep -q "^$T/top.conf:3: unknown setting 'bogus_top'" <<<"$out"

	conf_set "workers = 1;
@include \"${pfx}mid.conf\"
" "# mid
@include \"${pfx}leaf.conf\"
" '# leaf
policy = {
  rules = (
    "block DeviceId is \"Leaf1\"",
    "block DeviceOS iz \"x\""
    # the last rule
    #
  );
};
'
	check_config -c "$T/top.conf"
	check "$desc: a bad rule in the leaf is refused (exit $rc)" test "$rc" -eq 1
	check "$desc: ...naming ${pfx}leaf.conf:5" grep -q "${pfx}leaf.conf:5: rule: " <<<"$out"

	printf 'x = 1;\n\n  y = ;\n' >"$T/inc/leaf.conf"
	check_config -c "$T/top.conf"
	check "$desc: a syntax error in the leaf names ${pfx}leaf.conf:3 (exit $rc)" \
		bash -c '[ "$1" -eq 1 ] && grep -q "^$2leaf.conf:3: syntax: syntax error" <<<"$0"' \
		"$out" "$rc" "$pfx"
	printf '# mid\n@include "%snone.conf"\n' "$pfx" >"$T/inc/mid.conf"
	check_config -c "$T/top.conf"
	check "$desc: a missing include names its @include line, ${pfx}mid.conf:2 (exit $rc)" \
		bash -c '[ "$1" -eq 1 ] && grep -q "^$2mid.conf:2: syntax: cannot open include file" <<<"$0"' \
		"$out" "$rc" "$pfx"
}

here=$PWD
one_case "absolute names" "$T/inc/"
cd "$T/inc" || fail "cd $T/inc"
one_case "relative names, from the includes' directory" ""
cd "$T" || fail "cd $T"
one_case "relative names, from the top file's directory" "inc/"
# inc/mid.conf is there from the top file's directory, not from the working one
cd "$T/inc" || fail "cd $T/inc"
check_config -c "$T/top.conf"
check "a relative name is opened from the working directory: not found from $T/inc (exit $rc)" \
	bash -c '[ "$1" -eq 1 ] && grep -q "^$2/top.conf:2: syntax: cannot open include file" <<<"$0"' \
	"$out" "$rc" "$T"
check "...and the error says from where ($out)" \
	grep -q "^$T/top.conf:2: .*working directory.*$T/inc" <<<"$out"
cd "$here" || fail "cd $here"

# --- easctl reload: the running daemon's answer ----------------------------------
start_backend cas1 || finish
printf 'access_log = false;\n@include "%s/inc/gwpolicy.conf"\n' "$T" >"$T/gw.conf"
printf 'policy = {\n  rules = ( "block DeviceId is \\"Probe0\\"" );\n};\n' >"$T/inc/gwpolicy.conf"
start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
status_field() { "$EASCTL" -s "$CTL" status | awk -v k="$1" '$1==k { $1=""; sub(/^ /, ""); print }'; }
printf '# the policy\npolicy = {\n  rules = (\n    "block DeviceId is \\"A\\"",\n    "block DeviceOS iz \\"x\\""\n    # last\n  );\n};\n' \
	>"$T/inc/gwpolicy.conf"
out=$(timeout 10 "$EASCTL" -s "$CTL" reload 2>&1)
rc=$?
check "reload with a bad rule in the included file: refused (exit $rc), naming gwpolicy.conf:5 ($out)" \
	bash -c '[ "$1" -eq 3 ] && grep -q "reload refused: $2/inc/gwpolicy.conf:5: rule: " <<<"$0"' "$out" "$rc" "$T"
check "...and easctl status's last_reload_error too" \
	grep -q "^$T/inc/gwpolicy.conf:5: rule: " <<<"$(status_field last_reload_error)"
printf 'policy = {\n  default = "allow";\n\n  nap = 1;\n};\n' >"$T/inc/gwpolicy.conf"
out=$(timeout 10 "$EASCTL" -s "$CTL" reload 2>&1)
rc=$?
check "reload with an unknown key in the included file: refused (exit $rc), naming gwpolicy.conf:4 ($out)" \
	bash -c '[ "$1" -eq 3 ] && grep -q "reload refused: $2/inc/gwpolicy.conf:4: unknown setting .nap." <<<"$0"' \
	"$out" "$rc" "$T"
check "...and easctl status's last_reload_error too" \
	grep -q "^$T/inc/gwpolicy.conf:4: unknown setting" <<<"$(status_field last_reload_error)"
finish
