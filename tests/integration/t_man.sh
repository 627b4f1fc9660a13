#!/usr/bin/env bash
# The manual pages (issue #15): easgated(8), easctl(8) and easgate.conf(5) are
# made by `make` (build/man/), render without a single groff warning, and say
# what the programs do, because they are made from the tables the programs run
# on: every key the configuration parser accepts is in easgate.conf(5) and in
# the sample configuration (build/easgate.conf, the package's
# /etc/easgate/easgate.conf), every easctl command in easctl(8) and in easctl
# help, every easgated option in easgated(8). The sample loads, and its
# values are the built-in defaults except where config_keys.c marks an example.
source "$(dirname "$0")/lib.sh"
need man groff
DOC=$O/eg-doc
M=$O/man
check "eg-doc is built" test -x "$DOC"

# --- the pages exist and render cleanly ---------------------------------------------
for p in easgated.8 easctl.8 easgate.conf.5; do
	check "$p is made" test -s "$M/$p"
	LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$M/$p" >"$T/$p.txt" 2>"$T/$p.warn"
	rc=$?
	check "$p renders (exit $rc) with no warning from man/groff" \
		bash -c 'test "$0" -eq 0 && test ! -s "$1"' "$rc" "$T/$p.warn"
	sed 's/^/        /' "$T/$p.warn" | head -5
	check "$p has NAME, SYNOPSIS, DESCRIPTION, SEE ALSO" bash -c \
		'for s in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do grep -q "^$s" "$0" || exit 1; done' \
		"$T/$p.txt"
	check "$p carries this build's version (.TH)" \
		grep -qF "\"easgate $("$EASGATED" --version | cut -d" " -f2)\"" "$M/$p"
done

# make install puts them where man finds them (the package: t_deb).
out=$("$EG_ROOT/tools/install.sh" "$T/root" /usr/local "$O" 2>&1)
check "tools/install.sh into a DESTDIR (exit $?)" test $? -eq 0
for p in man8/easgated.8 man8/easctl.8 man5/easgate.conf.5; do
	check "make install puts /usr/local/share/man/$p" cmp -s "$M/${p#*/}" "$T/root/usr/local/share/man/$p"
done
check "...and the made sample as the example config" \
	cmp -s <(sed 's|/usr/local/share/easgate/web|X|' "$O/easgate.conf") \
	<(sed 's|/usr/local/share/easgate/web|X|' "$T/root/usr/local/share/easgate/easgate.conf.example")

# --- configuration keys: the parser's, the page's, the sample's -----------------------
mapfile -t keys < <("$DOC" keys)
check "eg-doc lists the keys (${#keys[@]})" test "${#keys[@]}" -gt 100
# The parser accepts exactly the table's keys (config.c's check_keys reads
# it); what it reads must be in that table too: a key read in config.c but
# missing from config_keys.c would be refused as unknown, and would go
# undocumented. Every quoted name config.c looks up is a leaf of some key.
leaves=$(printf '%s\n' "${keys[@]}" | sed 's/.*\.//' | sort -u)
read_names=$(grep -oE '(get_(str|uint|bool|secs|double|texts)\((&?rd), [a-z]+, |config_setting_get_member\([a-z]+, )"[a-z_]+"' \
	"$EG_ROOT/user/daemon/config.c" | sed -E 's/.*"([a-z_]+)"$/\1/' | sort -u)
check "config.c looks up names ($(wc -w <<<"$read_names"))" test "$(wc -w <<<"$read_names")" -gt 80
missing=$(comm -23 <(echo "$read_names") <(echo "$leaves"))
check "every name config.c reads is a key of config_keys.c${missing:+ (missing: $missing)}" test -z "$missing"
# The page: a .TP entry per key (\fBpath\fR), a section per top-level group.
miss=()
for k in "${keys[@]}"; do
	grep -qF "\\fB$k\\fR (" "$M/easgate.conf.5" || grep -qx ".SS $k" "$M/easgate.conf.5" || miss+=("$k")
done
check "every key is in easgate.conf(5)${miss[*]:+ (missing: ${miss[*]})}" test "${#miss[@]}" -eq 0
# The sample: every key is set, or shown commented out ("# name = ...;"
# where it has no default to write); uncommented, the file sets them all.
sample=$O/easgate.conf
check "the sample configuration is made" test -s "$sample"
sed -E 's/^( *)# ( *([a-z_]+ = .*;|[a-z_]+ = [{(]|[})];?))$/\1\2/' "$sample" >"$T/all.conf"
out=$("$DOC" keys-in "$T/all.conf" 2>&1)
check "the sample with its examples uncommented still loads" test $? -eq 0
miss=$(comm -23 <(printf '%s\n' "${keys[@]}" | sort) <(sort <<<"$out") | tr '\n' ' ')
check "every key is in the sample${miss:+ (missing: $miss)}" test -z "$miss"
check "...and most are set as shipped, not commented ($("$DOC" keys-in "$sample" | wc -l))" \
	test "$("$DOC" keys-in "$sample" | wc -l)" -ge $((${#keys[@]} - 20))
out=$("$DOC" diff "$sample")
rc=$?
check "the sample's values are the built-in defaults (eg-doc diff exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || sed 's/^/        /' <<<"$out"
make_pki
sed -e "s|/etc/easgate/tls/server.pem|$PKI/server.pem|; s|/etc/easgate/tls/server.key|$PKI/server.key|" \
	-e "s|trust_file = \"\";|trust_file = \"$PKI/root.pem\";|" "$sample" >"$T/easgate.conf"
out=$("$EASGATED" --check-config -c "$T/easgate.conf" 2>&1)
check "the sample passes easgated --check-config (with real certificate paths)" \
	grep -q "configuration OK" <<<"$out"
# The diff can fail: a sample value that is not the default is named.
sed 's/^  idle = 300;/  idle = 301;/' "$sample" >"$T/changed.conf"
out=$("$DOC" diff "$T/changed.conf")
check "eg-doc diff names a changed default (timeouts.idle)" \
	grep -q '^timeouts.idle: built in 300, file 301$' <<<"$out"

# --- easctl commands ------------------------------------------------------------------
cmds=$("$EASCTL" help | sed -n 's/^commands: //p')
check "easctl help lists the commands ($(wc -w <<<"$cmds"))" test "$(wc -w <<<"$cmds")" -ge 17
for c in $cmds; do
	h=$("$EASCTL" help "$c" 2>&1)
	check "easctl help $c starts with its usage, and easctl(8) has it" bash -c \
		'head -1 <<<"$0" | grep -q "^easctl $1\b" && grep -qF "\\fBeasctl $1" "$2"' \
		"$h" "$c" "$M/easctl.8"
done

# --- easgated options -----------------------------------------------------------------
opts=$(sed -n '/static const struct option lopts/,/{NULL/p' "$EG_ROOT/user/daemon/main.c" |
	grep -oE '^\s*\{"[a-z-]+"' | grep -oE '[a-z-]+')
check "main.c's getopt table has options ($(wc -w <<<"$opts"))" test "$(wc -w <<<"$opts")" -ge 15
miss=()
help=$("$EASGATED" --help)
for o in $opts; do
	grep -qF "\\fB\\-\\-${o//-/\\-}\\fR" "$M/easgated.8" && grep -q -- "--$o\b" <<<"$help" || miss+=("$o")
done
check "every easgated option is in easgated(8) and --help${miss[*]:+ (missing: ${miss[*]})}" \
	test "${#miss[@]}" -eq 0
finish
