#!/usr/bin/env bash
# ktls_bench.sh [BUILD_DIR] - the phone's TLS in user space (OpenSSL) vs in
# the kernel (tls.ktls = "on"), side by side in one run, on a kernel that has
# kernel TLS. This build machine's kernel has none: run it in a guest,
#   tests/kernel/vm.sh run -t 1800 deb12 tools/bench/ktls_bench.sh build
# Each mode gets a fresh gateway (one worker, relay_method = "splice") in
# front of the demo backend, and rounds alternate the modes, so a drift of
# the machine hits both. Per mode and round:
#   bulk       a SIZE-byte answer and a SIZE-byte upload (curl, TLS 1.3
#              AES-128-GCM): the worker's CPU (utime+stime, where the
#              kernel's crypto is charged: it runs in the worker's
#              splice/send/recv calls) and the whole system's busy CPU
#              (/proc/stat), per 10^9 bytes relayed;
#   keepalive  REQS OPTIONS requests on one kept-alive connection (curl):
#              the worker's CPU per request;
#   idle       IDLE connections parked after the handshake (idle_conns):
#              the worker's RSS and the kernel's slab per connection.
# Prints one line per figure and a table of the medians. Under an emulated
# CPU (TCG) absolute figures mean nothing: compare the modes within a run.
# Environment: KB_SIZE (100000000), KB_REQS (300), KB_IDLE (200), KB_ROUNDS (3),
# KB_AESNI (1: load aesni-intel first, as udev would on a real machine).
set -u
O=${1:-build}
cd "$(dirname "$0")/../.."
source tests/integration/lib.sh "$O"
SIZE=${KB_SIZE:-100000000} REQS=${KB_REQS:-300} IDLE=${KB_IDLE:-200} ROUNDS=${KB_ROUNDS:-3}
EAS=/Microsoft-Server-ActiveSync
Q="$EAS?Cmd=Sync&User=alice&DeviceId=KtlsBench1&DeviceType=iPhone"
HZ=$(getconf CLK_TCK)
python3 tests/integration/ktls_oracle.py | grep -q '^none' && { echo "no kernel TLS on $(uname -r)"; exit 77; }

# The kernel's AES-GCM: a real machine's udev loads aesni-intel for a CPU
# with AES-NI; the guests have no udev, so without this the kernel would use
# its generic C code (KB_AESNI=0 keeps that, to measure it).
gcm_driver() { awk '/^name/ {n = $3} /^driver/ && n == "gcm(aes)" {print $3; exit}' /proc/crypto; }
if [ "${KB_AESNI:-1}" = 1 ] && grep -qw aes /proc/cpuinfo && ! gcm_driver | grep -q aesni; then
	for d in "/lib/modules/$(uname -r)" ~/.cache/easgate-kernels/*/lib/modules/"$(uname -r)"; do
		[ -f "$d/kernel/arch/x86/crypto/aesni-intel.ko" ] || continue
		for m in crypto/cryptd crypto/crypto_simd arch/x86/crypto/aesni-intel; do
			busybox insmod "$d/kernel/$m.ko" 2>/dev/null
		done
		break
	done
fi
python3 tests/integration/ktls_oracle.py >/dev/null # instantiates gcm(aes) for /proc/crypto
echo "kernel $(uname -r), kernel gcm(aes): $(gcm_driver), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
make_pki
start_backend cas1 || exit 1
worker() { cat "/proc/$GW_PID/task/$GW_PID/children" 2>/dev/null | awk '{print $1}'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
busy() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
res() { echo "RESULT mode=$1 round=$2 $3=$4"; echo "$1 $3 $4 $2" >>"$T/results"; }

gateway() { # MODE
	printf 'tls = { ktls = "%s"; };\nrelay_method = "splice";\n' "$1" >"$T/gw-$1.conf"
	GW_PORT=$(free_port)
	GW_WORKERS=1 start_gateway -c "$T/gw-$1.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || exit 1
	wait_backends_up cas1 || exit 1
	W=$(worker)
	"$EASCTL" -s "$CTL" status | grep '^feature ktls'
}
stop() { kill -TERM "$GW_PID"; wait "$GW_PID" 2>/dev/null; }

for r in $(seq "$ROUNDS"); do
	for mode in off on; do
		gateway $mode
		# bulk: a download and an upload
		head -c "$SIZE" /dev/zero >"$T/up"
		t0=$(ticks "$W") b0=$(busy)
		curl -sS --cacert "$PKI/root.pem" --tlsv1.3 -u alice:x -X POST -d '' -o /dev/null \
			"https://127.0.0.1:$GW_PORT$Q&egtest_size=$SIZE" || echo "download failed"
		curl -sS --cacert "$PKI/root.pem" --tlsv1.3 -u alice:x -X POST -o /dev/null \
			-H 'Content-Type: message/rfc822' --data-binary "@$T/up" \
			"https://127.0.0.1:$GW_PORT$EAS?Cmd=SendMail&User=alice&DeviceId=KtlsBench1&DeviceType=iPhone&SaveInSent=T" ||
			echo "upload failed"
		t1=$(ticks "$W") b1=$(busy)
		res $mode "$r" worker_cpu_s_per_gb "$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v b="$SIZE" 'BEGIN {printf "%.3f", t / hz / (2 * b / 1e9)}')"
		res $mode "$r" system_cpu_s_per_gb "$(awk -v t=$((b1 - b0)) -v hz="$HZ" -v b="$SIZE" 'BEGIN {printf "%.3f", t / hz / (2 * b / 1e9)}')"
		rm -f "$T/up"
		# keep-alive requests on one connection
		: >"$T/ka.cfg"
		for _ in $(seq "$REQS"); do echo "url = \"https://127.0.0.1:$GW_PORT$EAS\"" >>"$T/ka.cfg"; done
		t0=$(ticks "$W")
		n=$(curl -sS --cacert "$PKI/root.pem" --tlsv1.3 -u alice:x -X OPTIONS -K "$T/ka.cfg" \
			-o /dev/null -w '%{http_code}\n' | grep -c '^200$')
		t1=$(ticks "$W")
		[ "$n" = "$REQS" ] || echo "keepalive: $n of $REQS answered 200"
		res $mode "$r" worker_cpu_ms_per_request "$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$REQS" 'BEGIN {printf "%.3f", t / hz * 1000 / n}')"
		# idle connections
		m0=$(rss_kb "$W") s0=$(slab_kb)
		"$O/bench/idle_conns" -n "$IDLE" "127.0.0.1:$GW_PORT" >"$T/idle.out" 2>"$T/idle.err" &
		ic=$!
		for _ in $(seq 600); do grep -q '^READY' "$T/idle.out" && break; sleep 0.1; done
		grep '^READY' "$T/idle.out" || echo "idle_conns not ready: $(tail -2 "$T/idle.err")"
		m1=$(rss_kb "$W") s1=$(slab_kb)
		kill -TERM $ic
		wait $ic
		res $mode "$r" worker_rss_kb_per_idle_conn "$(awk -v d=$((m1 - m0)) -v n="$IDLE" 'BEGIN {printf "%.1f", d / n}')"
		res $mode "$r" slab_kb_per_idle_conn "$(awk -v d=$((s1 - s0)) -v n="$IDLE" 'BEGIN {printf "%.1f", d / n}')"
		stop
	done
done
# What tls.ktls = "auto" decides on this machine (its start-up measurement)
gateway auto
grep -m1 'event=ktls_cost' "$T/gw.log" | sed 's/^.*event=/event=/'
stop
echo "== medians of $ROUNDS rounds ($(uname -r), $(nproc) CPUs; SIZE=$SIZE REQS=$REQS IDLE=$IDLE)"
printf '%-30s %12s %12s %8s\n' figure user-space kernel k/u
for f in worker_cpu_s_per_gb system_cpu_s_per_gb worker_cpu_ms_per_request worker_rss_kb_per_idle_conn slab_kb_per_idle_conn; do
	med() { awk -v m="$1" -v f="$f" '$1 == m && $2 == f {print $3}' "$T/results" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
	u=$(med off) k=$(med on)
	rr=$(for r in $(seq "$ROUNDS"); do
		awk -v f="$f" -v r="$r" '$2 == f && $4 == r {v[$1] = $3} END {if (v["off"] != 0) printf "%.2f ", v["on"] / v["off"]}' "$T/results"
	done)
	printf '%-30s %12s %12s %8s   per round: %s\n' "$f" "$u" "$k" "$(awk -v u="$u" -v k="$k" 'BEGIN {if (u != 0) printf "%.2f", k / u; else print "-"}')" "$rr"
done
