# lib_console.sh - what the console's browser tests share (t_console,
# t_console_pages): sourced after lib.sh.
#  console_need: skips (or fails under must_run) without chromium,
#    chromium-driver and python3-selenium; sets PY.
#  console_accounts FILE: helen (helpdesk), victor (viewer), ada (admin),
#    passwords pw-NAME-0123, written by easctl admin passwd.
#  phone USER DEVICE TYPE UA [CMD] [BODY.wbxml]: one EAS request (Sync by
#    default) through the gateway; prints the HTTP status.
#  newphone USER DEVICE TYPE UA: a phone's first contact, FolderSync then Sync.
#  console_spki: base64 SHA-256 of the console certificate's key.
#  console_browser SCRIPT CONFIG.json NCHECKS: runs a browser script, turns
#    each of its JSON check lines into pass/fail, and checks it ran to its
#    end with NCHECKS checks.

console_need() {
	need curl xml2wbxml openssl
	PY=/usr/bin/python3 # Debian's, where python3-selenium is
	if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ] ||
		! $PY -c 'import selenium' 2>/dev/null; then
		must_run && { fail "chromium, chromium-driver and python3-selenium are needed (make deps)"; finish; }
		skip "needs chromium, chromium-driver and python3-selenium"
	fi
}

console_accounts() {
	local a
	for a in "helen helpdesk" "victor viewer" "ada admin"; do
		set -- $a
		echo "pw-$1-0123" | "$EASCTL" admin passwd "$1" "$2" --file "$ACC" >/dev/null ||
			{ fail "easctl admin passwd $1"; return 1; }
	done
}

phone() {
	local body=()
	[ -n "${6:-}" ] && body=(--data-binary "@$6") || body=(--data-binary "")
	eas -u "$1:secret" -A "$4" -H "MS-ASProtocolVersion: 14.1" \
		-H "Content-Type: application/vnd.ms-sync.wbxml" "${body[@]}" -o /dev/null -w '%{http_code}' \
		"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=${5:-Sync}&User=$1&DeviceId=$2&DeviceType=$3")"
}

# Quarantine relays FolderSync: the backend's 200 authenticates the phone,
# so it becomes a device (only then is it in the inventory and the queue).
newphone() {
	local st
	st=$(phone "$@" FolderSync)
	[ "$st" = 200 ] || { fail "$1's FolderSync: HTTP $st"; return 1; }
	phone "$@" >/dev/null
}

console_spki() {
	openssl x509 -in "$PKI/server.pem" -pubkey -noout | openssl pkey -pubin -outform der |
		openssl dgst -sha256 -binary | base64
}

console_browser() {
	local script=$1 conf=$2 want=$3 rc nchecks=0 line what
	local base
	base=$(basename "$script" .py)
	timeout 300 $PY "$script" "$conf" >"$T/$base.out" 2>"$T/$base.err"
	rc=$?
	if [ "$rc" -eq 77 ]; then
		if must_run; then
			fail "the browser test did not run: $(tail -1 "$T/$base.out")"
		else
			skip "$(tail -1 "$T/$base.out")"
		fi
	fi
	check "$base.py ran every step (exit $rc)" test "$rc" -eq 0
	check "$base.py reached its end" grep -q '"done": true' "$T/$base.out"
	[ "$rc" -eq 0 ] || { tail -5 "$T/$base.out" "$T/$base.err"; }
	while IFS= read -r line; do
		case $line in
		'{"check"'*)
			nchecks=$((nchecks + 1))
			what=$($PY -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["check"] + ("" if j["ok"] else " -- " + j["detail"]))' "$line")
			if $PY -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["ok"] else 1)' "$line"; then
				pass "browser: $what"
			else
				fail "browser: $what"
			fi
			;;
		esac
	done <"$T/$base.out"
	check "the browser made all $want checks ($nchecks)" test "$nchecks" -eq "$want"
}
