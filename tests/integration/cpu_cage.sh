# shellcheck shell=bash
# cpu_cage.sh - run a process on a fraction of a CPU (sourced after lib.sh).
#
# A cgroup with a CFS quota, as a container's CPU limit or a loaded host gives
# a daemon: its own work, unchanged, takes longer by wall clock. For tests of
# what must hold while the daemon is slow (the watchdog through a reload),
# without test-only delays in the product. cgroup v2 (cpu.max) or v1
# (cpu.cfs_quota_us); needs root. The cage is removed at exit (cage_drop).

CAGE=
# cage_make QUOTA_US [PERIOD_US]: a cage allowed QUOTA_US of CPU per
# PERIOD_US (default 100 ms; at most 1 s). Fails with a reason on stderr when
# no cpu controller can be used here.
cage_make() {
	local q=$1 per=${2:-100000} mnt
	if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
		grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control ||
			echo +cpu >/sys/fs/cgroup/cgroup.subtree_control || return 1
		CAGE=/sys/fs/cgroup/egtest-cage-$$
		mkdir "$CAGE" && echo "$q $per" >"$CAGE/cpu.max" || return 1
		return 0
	fi
	mnt=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpu(,|$)/ { print $2; exit }' /proc/self/mounts)
	[ -n "$mnt" ] || { echo "no cgroup cpu controller (v2 cpu.max or v1 cpu)" >&2; return 1; }
	CAGE=$mnt/egtest-cage-$$
	mkdir "$CAGE" && echo "$per" >"$CAGE/cpu.cfs_period_us" &&
		echo "$q" >"$CAGE/cpu.cfs_quota_us"
}
# cage_put PID: the process (all its threads, and children it forks from
# now on) into the cage.
cage_put() { echo "$1" >"$CAGE/cgroup.procs"; }
# cage_release: every process in the cage back to the hierarchy's root (the
# cage's parent), where no quota applies.
cage_release() {
	local p
	[ -n "$CAGE" ] && [ -d "$CAGE" ] || return 0
	while read -r p; do
		echo "$p" >"$(dirname "$CAGE")/cgroup.procs" 2>/dev/null
	done <"$CAGE/cgroup.procs"
	[ -z "$(cat "$CAGE/cgroup.procs")" ]
}
cage_drop() {
	[ -n "$CAGE" ] && [ -d "$CAGE" ] || return 0
	cage_release
	rmdir "$CAGE"
}
# threads PID: how many threads the process has.
threads() { local t=(/proc/"$1"/task/*) && echo "${#t[@]}"; }
# cpu_ms PID: the CPU time (user + system, all threads) the process used.
cpu_ms() {
	local f
	read -ra f <<<"$(sed 's/^.*) //' "/proc/$1/stat")" || return 1
	echo $(((f[11] + f[12]) * 1000 / $(getconf CLK_TCK)))
}
# cage_until_thread_ends PID BASE [TIMEOUT_S]: (run in the background) once
# PID has more threads than BASE (its count before the job was started: this
# may start late) and is back to BASE, release the cage. For the master's reload: the watchdog keeper thread runs
# exactly while the loop is held for parse, checks and TLS contexts, so the
# cage slows that part and not the forks of new workers after it.
cage_until_thread_ends() {
	python3 - "$CAGE" "$1" "$2" "${3:-60}" <<'PY'
import os, sys, time
cage, pid, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
limit, seen = time.monotonic() + float(sys.argv[4]), False
def threads():
    return len(os.listdir("/proc/%s/task" % pid))
while time.monotonic() < limit:
    n = threads()
    seen = seen or n > base
    if seen and n <= base:
        break
    time.sleep(0.002)
parent = os.path.join(os.path.dirname(cage), "cgroup.procs")
moved = open(os.path.join(cage, "cgroup.procs")).read().split()
for p in moved:
    with open(parent, "w") as f:
        f.write(p)
print("released at %d ms, thread seen: %s, pids: %s" % (time.monotonic() * 1000, seen, " ".join(moved)))
sys.exit(0 if seen else 1)
PY
}
