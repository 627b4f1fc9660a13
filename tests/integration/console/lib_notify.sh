# shellcheck shell=bash
# lib_notify.sh - the notice tests' local SMTP relay and webhook receiver
# (sourced after lib.sh; t_notify, t_notify_loop).
#   notify_need          skip (or fail as root/CI) without python3-aiosmtpd
#   notify_sinks_start   after make_pki: SMTP relay on $SMTP (STARTTLS with the
#                        test PKI, AUTH easgate / the first line of $T/smtp.pw),
#                        mails into $T/mail/<n>.eml; webhook receiver on $HOOK
#                        (HMAC key $T/hook.key), one line per POST in
#                        $T/hook.jsonl, valid bodies in $T/hook/<n>.json
#   smtp_start           (re)start the relay alone (after a kill "$SMTP_PID")
#   notify_channels      the notify settings' lines that reach the sinks:
#                        admins (mdm-admins@example.test) by SMTP and webhook,
#                        users at their UPN with a contact ("extension 4711")
#   wait_for S 'COND'    until the shell condition holds, at most S seconds
PYD=/usr/bin/python3 # Debian's, with python3-aiosmtpd
ND=$EG_ROOT/tests/integration/console

notify_need() {
	if ! $PYD -c 'import aiosmtpd' 2>/dev/null; then
		must_run && { fail "python3-aiosmtpd is needed (make deps)"; finish; }
		skip "needs python3-aiosmtpd"
	fi
}

smtp_start() {
	rm -f "$T/mail/ready"
	$PYD "$ND/smtp_sink.py" "$SMTP" "$T/mail" "$PKI/server.pem" "$PKI/server.key" easgate \
		"$(head -1 "$T/smtp.pw")" >>"$T/smtp.log" 2>&1 &
	SMTP_PID=$!
	EG_PIDS+=($SMTP_PID)
	for _ in $(seq 100); do [ -e "$T/mail/ready" ] && return 0; sleep 0.1; done
	fail "the SMTP sink did not start"; cat "$T/smtp.log"; finish
}

notify_sinks_start() {
	SMTP=$(free_port)
	HOOK=$(free_port)
	printf 'relay-secret-1\n' >"$T/smtp.pw"
	printf 'hook-secret-1\n' >"$T/hook.key"
	chmod 600 "$T/smtp.pw" "$T/hook.key"
	smtp_start
	mkdir -p "$T/hook"
	$PYD "$ND/webhook_sink.py" "$HOOK" "$T/hook.key" "$T/hook.jsonl" "$T/hook" >"$T/hook.log" 2>&1 &
	EG_PIDS+=($!)
	for _ in $(seq 100); do [ -e "$T/hook.jsonl.ready" ] && return 0; sleep 0.1; done
	fail "the webhook sink did not start"; cat "$T/hook.log"; finish
}

notify_channels() {
	cat <<CONF
  from = "easgate@example.test";
  admins = [ "mdm-admins@example.test" ];
  smtp = { url = "smtp://127.0.0.1:$SMTP"; starttls = true; user = "easgate";
           password_file = "$T/smtp.pw"; ca = "$PKI/root.pem"; };
  webhook = { url = "http://127.0.0.1:$HOOK/hook"; secret_file = "$T/hook.key"; };
  user = { enabled = true; address = ""; contact = "the helpdesk, extension 4711"; };
CONF
}

# The condition is evaluated anew each time: write it in single quotes.
wait_for() {
	local s=$1; shift
	for _ in $(seq $((s * 10))); do eval "$*" && return 0; sleep 0.1; done
	return 1
}
