# shellcheck shell=bash
# services.sh - the SOGo stack for t_sogo.sh (sourced after lib.sh):
# PostgreSQL, dovecot (IMAP), memcached and sogod, all on loopback, all
# private to the test run except the PostgreSQL cluster (Debian's, started
# only if it was down, and stopped again only then).
#
# Rules kept here: nothing under /etc is changed (sogod reads its config
# through a bind mount in its own mount namespace), only processes this file
# started are stopped, by PID, and the test database is dropped at the end.

SOGO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOGO_PKGS="sogo sogo-activesync postgresql dovecot-imapd memcached"
SOGO_WORKERS=3
SOGO_DB=egtest_sogo # database and role, dropped at the end
SOGO_DB_PASS=eg$RANDOM$RANDOM
SOGO_WATCHDOG=''
SOGO_WORKER_PIDS=()
PG_CLUSTER='' # "VERSION NAME" when this test started the cluster
PG_PORT=5432
DB_MADE=''

# Install what is missing. Package scripts must not start services: Debian's
# policy-rc.d convention (exit 101 = "not allowed") keeps postgresql, dovecot
# and memcached from starting on their default ports.
sogo_install() {
	local p missing=()
	for p in $SOGO_PKGS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
	fi
	echo "  (installing ${missing[*]})"
	export DEBIAN_FRONTEND=noninteractive
	# Wait for a dpkg lock held by another apt run instead of failing at once;
	# update the lists only when the cached ones do not have the packages.
	local apt=(apt-get -y -q -o DPkg::Lock::Timeout=120 --no-install-recommends)
	if ! timeout 600 "${apt[@]}" install "${missing[@]}" >"$T/apt.log" 2>&1; then
		timeout 300 apt-get -q -o DPkg::Lock::Timeout=120 update >>"$T/apt.log" 2>&1
		timeout 600 "${apt[@]}" install "${missing[@]}" >>"$T/apt.log" 2>&1 || {
			tail -5 "$T/apt.log"
			return 1
		}
	fi
}

# fill TEMPLATE OUT NAME=VALUE... : replace @NAME@ by VALUE (values are paths,
# ports and URLs without '|').
fill() {
	local in=$1 out=$2 kv expr=()
	shift 2
	for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
	sed "${expr[@]}" "$in" >"$out"
}

# The first Debian cluster; started if it is down (remembered for the stop).
pg_start() {
	local ver name port status
	read -r ver name port status _ < <(pg_lsclusters -h 2>/dev/null | head -1)
	[ -n "${ver:-}" ] || { fail "no PostgreSQL cluster (pg_lsclusters is empty)"; return 1; }
	PG_PORT=$port
	if [ "$status" != online ]; then
		pg_ctlcluster "$ver" "$name" start >"$T/pg-start.log" 2>&1 || {
			fail "pg_ctlcluster $ver $name start"
			cat "$T/pg-start.log"
			return 1
		}
		PG_CLUSTER="$ver $name"
	fi
	for _ in $(seq 100); do
		pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && return 0
		sleep 0.1
	done
	fail "PostgreSQL on port $PG_PORT not ready after 10 s"
	return 1
}

pg_admin() { (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@"); }

# The test's own role and database; alice is SOGo's only user (plain password,
# as the recipe's SQL user source expects).
pg_make_db() {
	pg_admin >"$T/pg-setup.log" 2>&1 <<EOF || { fail "creating the $SOGO_DB database"; cat "$T/pg-setup.log"; return 1; }
DROP DATABASE IF EXISTS $SOGO_DB WITH (FORCE);
DROP ROLE IF EXISTS $SOGO_DB;
CREATE ROLE $SOGO_DB LOGIN PASSWORD '$SOGO_DB_PASS';
CREATE DATABASE $SOGO_DB OWNER $SOGO_DB;
EOF
	DB_MADE=1
	PGPASSWORD=$SOGO_DB_PASS psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
		-U "$SOGO_DB" "$SOGO_DB" >>"$T/pg-setup.log" 2>&1 <<'EOF' || { fail "creating sogo_users"; cat "$T/pg-setup.log"; return 1; }
CREATE TABLE sogo_users (c_uid varchar(255) PRIMARY KEY, c_name varchar(255),
  c_password varchar(255), c_cn varchar(255), mail varchar(255));
INSERT INTO sogo_users VALUES ('alice', 'alice', 'secret', 'Alice Test', 'alice@example.test');
EOF
}

dovecot_start() {
	local d=$T/dovecot
	IMAP_PORT=$(free_port)
	mkdir -p "$d/run" "$d/state" "$T/mail"
	chown mail:mail "$T/mail"
	echo 'alice:{PLAIN}secret' >"$d/users"
	fill "$SOGO_DIR/dovecot.conf.in" "$d/dovecot.conf" DIR="$d" MAIL="$T/mail" PORT="$IMAP_PORT"
	dovecot -F -c "$d/dovecot.conf" >"$d/stdout.log" 2>&1 &
	EG_PIDS+=($!)
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$IMAP_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	fail "dovecot did not listen on $IMAP_PORT"
	cat "$d/stdout.log" "$d/dovecot.log" 2>/dev/null | tail -5
	return 1
}

memcached_start() {
	MEMCACHED_PORT=$(free_port)
	memcached -u memcache -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 16 >"$T/memcached.log" 2>&1 &
	EG_PIDS+=($!)
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$MEMCACHED_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	fail "memcached did not listen on $MEMCACHED_PORT"
	return 1
}

# sogod in the foreground (WONoDetach), so $! is its watchdog: unshare, sh,
# setpriv and env all exec. The mount namespace shows sogod our config as
# /etc/sogo (SOGo only reads /etc/sogo/{debconf,sogo}.conf, then the user's
# GNUstep defaults, then arguments); HOME keeps GNUstep's defaults under $T.
sogod_start() {
	SOGO_RUN=$T/sogo
	SOGO_PORT=$(free_port)
	mkdir -p "$SOGO_RUN/etc" "$SOGO_RUN/home"
	chown sogo:sogo "$SOGO_RUN" "$SOGO_RUN/home"
	fill "$SOGO_DIR/sogo.conf.in" "$SOGO_RUN/etc/sogo.conf" \
		DBURL="postgresql://$SOGO_DB:$SOGO_DB_PASS@127.0.0.1:$PG_PORT/$SOGO_DB" \
		IMAP_PORT="$IMAP_PORT" MEMCACHED_PORT="$MEMCACHED_PORT" SOGO_PORT="$SOGO_PORT" \
		WORKERS="$SOGO_WORKERS" RUN="$SOGO_RUN"
	chown root:sogo "$SOGO_RUN/etc/sogo.conf"
	chmod 640 "$SOGO_RUN/etc/sogo.conf"
	unshare --mount --propagation private -- sh -c '
		mount --bind "$1/etc" /etc/sogo || exit 97
		exec setpriv --reuid=sogo --regid=sogo --init-groups \
			env -i HOME="$1/home" PATH=/usr/sbin:/usr/bin:/bin LANG=C.UTF-8 \
			/usr/sbin/sogod -WONoDetach YES' sogod-start "$SOGO_RUN" \
		>"$SOGO_RUN/stdout.log" 2>&1 &
	SOGO_WATCHDOG=$!
	disown "$SOGO_WATCHDOG" # it is SIGKILLed at the end: no "Killed" job report
	local code=000
	for _ in $(seq 300); do
		kill -0 "$SOGO_WATCHDOG" 2>/dev/null || break
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
			"http://127.0.0.1:$SOGO_PORT/SOGo/Microsoft-Server-ActiveSync" 2>/dev/null)
		[ "$code" != 000 ] && break
		sleep 0.1
	done
	if [ "$code" = 000 ]; then
		if kill -0 "$SOGO_WATCHDOG" 2>/dev/null; then
			fail "sogod did not answer on 127.0.0.1:$SOGO_PORT within 30 s"
		else
			fail "sogod exited before answering on 127.0.0.1:$SOGO_PORT"
		fi
		sogo_log_tail 15
		return 1
	fi
	# All workers, for the explicit stop (the watchdog alone may not take them down).
	for _ in $(seq 50); do
		mapfile -t SOGO_WORKER_PIDS < <(ps --ppid "$SOGO_WATCHDOG" -o pid= | tr -d ' ')
		[ ${#SOGO_WORKER_PIDS[@]} -ge "$SOGO_WORKERS" ] && break
		sleep 0.1
	done
	echo "  (sogod watchdog $SOGO_WATCHDOG, workers ${SOGO_WORKER_PIDS[*]}, port $SOGO_PORT)"
}

# Is PID still a sogod process? (guards against PID reuse before a SIGKILL)
is_sogod() { [ "$(readlink "/proc/$1/exe" 2>/dev/null)" = /usr/sbin/sogod ]; }

# SIGTERM was seen not to stop sogod's workers (recipe): freeze the watchdog so
# it cannot respawn anything, then SIGKILL its current and recorded children,
# and itself.
sogod_stop() {
	local p kids=()
	[ -n "$SOGO_WATCHDOG" ] || return 0
	if is_sogod "$SOGO_WATCHDOG"; then
		kill -STOP "$SOGO_WATCHDOG" 2>/dev/null
		mapfile -t kids < <(ps --ppid "$SOGO_WATCHDOG" -o pid= | tr -d ' ')
	fi
	for p in "${kids[@]}" "${SOGO_WORKER_PIDS[@]}" "$SOGO_WATCHDOG"; do
		is_sogod "$p" && kill -KILL "$p" 2>/dev/null
	done
	for p in "${kids[@]}" "${SOGO_WORKER_PIDS[@]}" "$SOGO_WATCHDOG"; do
		for _ in $(seq 50); do is_sogod "$p" || break; sleep 0.1; done
	done
	SOGO_WATCHDOG=''
}

sogo_log_tail() { # $1 = lines
	echo "  --- sogo.log (tail) ---"
	tail -n "$1" "$SOGO_RUN/sogo.log" 2>/dev/null | cut -c1-300 | sed 's/^/  | /'
	tail -n 5 "$SOGO_RUN/stdout.log" 2>/dev/null | sed 's/^/  | /'
}

# Runs from the EXIT trap, before lib.sh's cleanup (which stops the gateway,
# dovecot and memcached by PID and removes $T).
sogo_cleanup() {
	sogod_stop
	if [ -n "$DB_MADE" ]; then
		pg_admin -c "DROP DATABASE IF EXISTS $SOGO_DB WITH (FORCE)" \
			-c "DROP ROLE IF EXISTS $SOGO_DB" >/dev/null 2>&1
	fi
	if [ -n "$PG_CLUSTER" ]; then
		# shellcheck disable=SC2086 # "VERSION NAME"
		pg_ctlcluster $PG_CLUSTER stop -m fast >/dev/null 2>&1
	fi
}
