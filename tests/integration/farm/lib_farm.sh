# shellcheck shell=bash
# lib_farm.sh - PostgreSQL clusters and easgated farm nodes for the farm tests
# (sourced after lib.sh). Everything lives in $T; every process is stopped by
# its PID (lib.sh's cleanup, plus stop_pg).
#
#   start_pg NAME [postgres -c settings...]   initdb + start; PG_PORT_<NAME>, PG_PID_<NAME>
#   stop_pg NAME / kill_pg NAME / restart_pg NAME
#   psql_farm NAME SQL...                      psql -XAt against database easgate
#   start_node NAME [extra config...]          a farm node; NODE_PORT_<NAME>, NODE_PID_<NAME>
#   nctl NAME easctl-args...                   easctl against that node
#   kill_node NAME                             kill -9 of its master and workers

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# A process this test stopped itself leaves the cleanup list (its PID could
# be reused by someone else's process before the test ends).
forget_pid() {
	local keep=() p
	for p in "${EG_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	EG_PIDS=("${keep[@]}")
}

need_pg() {
	if [ ! -x "$PG_BIN/initdb" ]; then
		must_run || skip "needs PostgreSQL in $PG_BIN (make deps installs it)"
		fail "needs PostgreSQL in $PG_BIN (make deps installs it)"
		finish
	fi
}

# initdb refuses root: the clusters run as postgres (Debian's package makes
# that user) when the test runs as root, else as the test's own user.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_own() {
	if [ "$(id -u)" -eq 0 ]; then chown postgres "$@"; fi
}

start_pg() {
	local name=$1
	shift
	local dir=$T/pg-$name
	mkdir -p "$dir/sock"
	pg_own "$dir" "$dir/sock"
	if ! as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U easgate --no-sync -E UTF8 \
		>"$T/pg-$name-initdb.log" 2>&1; then
		fail "initdb $name"
		cat "$T/pg-$name-initdb.log"
		return 1
	fi
	eval "PG_PORT_$name=$(free_port)"
	eval "PG_OPTS_$name=\"\$*\""
	restart_pg "$name" || return 1
	PGOPTIONS="-c default_transaction_read_only=off" \
		as_pg "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port "$name")" -U easgate \
		-d postgres -c "CREATE DATABASE easgate" >/dev/null || {
		fail "createdb on $name"
		return 1
	}
}

pg_port() { eval "echo \$PG_PORT_$1"; }
pg_pid() { eval "echo \$PG_PID_$1"; }

# (Re)start a stopped cluster on its port. After a kill -9 the old backends
# may need a moment to notice their postmaster is gone: retried, bounded.
restart_pg() {
	local name=$1
	local dir=$T/pg-$name port opts
	port=$(pg_port "$name")
	eval "opts=\$PG_OPTS_$name"
	local o="-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off"
	local s
	for s in $opts; do o="$o -c $s"; done
	for _ in $(seq 50); do
		if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "$o" start \
			>/dev/null 2>&1; then
			local pid
			pid=$(head -1 "$dir/data/postmaster.pid")
			eval "PG_PID_$name=$pid"
			EG_PIDS+=("$pid")
			return 0
		fi
		sleep 0.2
	done
	fail "PostgreSQL $name did not start"
	tail -5 "$dir/server.log"
	return 1
}

# kill_tree PID: kill -9 of a process and its children, at once, and wait
# until they are gone.
kill_tree() {
	local pid=$1 kids
	kids=$(ps -o pid= --ppid "$pid" | tr '\n' ' ')
	kill -KILL "$pid" $kids 2>/dev/null
	wait "$pid" 2>/dev/null # reap it if it is ours (kill -0 succeeds on a zombie)
	for p in $pid $kids; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
	forget_pid "$pid"
}

# kill -9 of the postmaster and every backend: the database is gone at once.
kill_pg() {
	kill_tree "$(pg_pid "$1")"
}

stop_pg() {
	local pid
	pid=$(pg_pid "$1")
	kill -INT "$pid" 2>/dev/null # fast shutdown
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
	forget_pid "$pid"
}

psql_farm() {
	local name=$1; shift
	"$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(pg_port "$name")" -U easgate \
		-d easgate "$@"
}

conninfo_of() { echo "host=127.0.0.1 port=$(pg_port "$1") user=easgate dbname=easgate"; }

# start_node NAME [config lines...]: a farm node on its own port, state and
# control socket, against FARM_CONNINFO (default: cluster "main"), backend
# cas1 (start_backend cas1 first). Extra lines go into its config file.
start_node() {
	local n=$1
	shift
	local d=$T/node-$n port
	port=$(free_port)
	mkdir -p "$d/state" "$d/run"
	{
		echo "store = \"postgresql\";"
		echo "node_name = \"$n\";"
		if [ -z "${NODE_NO_PG_GROUP:-}" ]; then
			echo "postgresql = { conninfo = \"${FARM_CONNINFO:-$(conninfo_of main)}\";"
			echo "  heartbeat = 1; timeout = ${FARM_TIMEOUT:-2}; initial_sync = 10;"
			echo "  journal_max = ${FARM_JOURNAL_MAX:-1000000}; };"
		fi
		local l
		for l in "$@"; do echo "$l"; done
	} >"$d/easgate.conf"
	"$EASGATED" -c "$d/easgate.conf" --listen "127.0.0.1:$port" --tls-cert "$PKI/server.pem" \
		--tls-key "$PKI/server.key" --trust-file "$PKI/root.pem" --state-dir "$d/state" \
		--control-socket "$d/run/ctl.sock" -w "${NODE_WORKERS:-2}" \
		--backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" >>"$T/node-$n.log" 2>&1 &
	local pid=$!
	EG_PIDS+=("$pid")
	eval "NODE_PORT_$n=$port NODE_PID_$n=$pid"
	for _ in $(seq 150); do
		if "$EASCTL" -s "$d/run/ctl.sock" status 2>/dev/null | grep -q '^store ' &&
			curl -s -o /dev/null --max-time 2 --cacert "$PKI/root.pem" "https://127.0.0.1:$port/"; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	fail "node $n did not start"
	tail -20 "$T/node-$n.log"
	return 1
}

node_port() { eval "echo \$NODE_PORT_$1"; }
node_pid() { eval "echo \$NODE_PID_$1"; }
nctl() {
	local n=$1; shift
	"$EASCTL" -s "$T/node-$n/run/ctl.sock" "$@"
}

kill_node() {
	kill_tree "$(node_pid "$1")"
}

# stop_node NAME: SIGTERM, wait (graceful stop).
stop_node() {
	local pid
	pid=$(node_pid "$1")
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	forget_pid "$pid"
}

# A phone's request to a node: prints the HTTP status and whether the
# backend answered ("200 backend", "403 gateway"). EAS 12.1, so a refusal is
# a plain 403.
# phone NODE USER DEVICE_ID [CMD [DEVICE_TYPE [BODY_FILE]]]
phone() {
	local port hdr
	port=$(node_port "$1")
	hdr=$(curl -sS -o /dev/null -D - --max-time 10 --cacert "$PKI/root.pem" -u "$2:secret" \
		-X POST -H "MS-ASProtocolVersion: 12.1" -H "User-Agent: FarmPhone/1.0" \
		-H "Content-Type: application/vnd.ms-sync.wbxml" --data-binary "@${6:-/dev/null}" \
		"https://127.0.0.1:$port/Microsoft-Server-ActiveSync?Cmd=${4:-Sync}&User=$2&DeviceId=$3&DeviceType=${5:-FarmPhone}" 2>&1)
	local st
	st=$(awk 'NR==1{print $2}' <<<"$hdr")
	if grep -qi '^X-Backend:' <<<"$hdr"; then echo "${st:-000} backend"; else echo "${st:-000} gateway"; fi
}

# wait_for SECONDS COMMAND...: poll until it succeeds (bounded).
wait_for() {
	local n=$(($1 * 10)); shift
	for _ in $(seq "$n"); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# The node's journal is empty and its store up.
drained() {
	nctl "$1" metrics 2>/dev/null | grep -q '^easgate_store_journal_entries 0$' &&
		nctl "$1" metrics 2>/dev/null | grep -q '^easgate_store_up{store="postgresql"} 1$'
}

node_logs_on_failure() {
	[ "$EG_FAILS" -gt 0 ] || return 0
	local f
	for f in "$T"/node-*.log; do
		echo "  -- last lines of $(basename "$f"):"
		tail -n 15 "$f" | sed 's/^/  | /'
	done
}

# farm_console N: the config line of node N's web console (pass it to
# start_node), with the helpdesk account helen (password pw-helen-0123).
# Its port is kept in $T/console-N.port (this runs in a subshell).
farm_console() {
	local n=$1 acc=$T/console-$1.passwd port
	port=$(free_port)
	echo "$port" >"$T/console-$n.port"
	if [ ! -f "$acc" ]; then
		echo "pw-helen-0123" | "$EASCTL" admin passwd helen helpdesk --file "$acc" >/dev/null ||
			return 1
	fi
	echo "admin = { web = \"127.0.0.1:$port\"; web_accounts = \"$acc\"; web_assets = \"$EG_ROOT/web\"; };"
}

# console_run N ARG...: ARGs as one command, POSTed by helen to node N's
# console (logged in once, with the session's CSRF token), as the browser's
# pages do. Prints "HTTP_STATUS OUTPUT" (OUTPUT: the command's text, or the
# error); returns curl's status.
console_run() {
	local n=$1
	shift
	local u c_ token a args=()
	u=https://127.0.0.1:$(cat "$T/console-$n.port")
	c_=(curl -sS --cacert "$PKI/root.pem" --max-time 45)
	if [ ! -s "$T/console-$n.login" ]; then
		"${c_[@]}" -c "$T/console-$n.jar" -o "$T/console-$n.login" --data-urlencode user=helen \
			--data-urlencode password=pw-helen-0123 "$u/api/login" || return 1
	fi
	token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf"])' \
		"$T/console-$n.login") || return 1
	for a in "$@"; do args+=(--data-urlencode "a=$a"); done
	local st
	st=$("${c_[@]}" -b "$T/console-$n.jar" -H "X-CSRF-Token: $token" -o "$T/console-$n.out" \
		-w '%{http_code}' "${args[@]}" "$u/api/run") || return 1
	echo "$st $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j.get("output") or j.get("error") or "")' "$T/console-$n.out")"
}
