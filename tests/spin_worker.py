#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""spin_worker.py PID - make a running process spin for ever (x86-64, root).

A worker whose loop spins without ticking (state R, on a CPU) is a hang the
watchdog must report, and the product has no code to make one on purpose.
This attaches with ptrace, writes "jmp ." (eb fe) over the instruction the
main thread returns to, in that process's private copy of the page, and
detaches: the syscall it was in (epoll_wait) ends or is restarted, and then
the thread loops on that instruction. Prints the address. Exits 1 with a
reason when it cannot (not x86-64, no ptrace, the process gone).
"""
import ctypes
import os
import platform
import sys

PTRACE_PEEKTEXT, PTRACE_POKETEXT, PTRACE_GETREGS = 1, 4, 12
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
RIP = 16  # struct user_regs_struct: r15 ... orig_rax, rip


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: spin_worker.py PID")
    if platform.machine() != "x86_64":
        sys.exit("spin_worker.py: x86-64 only (here %s)" % platform.machine())
    pid = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

    def pt(req, addr=0, data=0):
        ctypes.set_errno(0)
        r = libc.ptrace(req, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data))
        e = ctypes.get_errno()
        if r == -1 and e:
            sys.exit("spin_worker.py: ptrace(%d) on %d: %s" % (req, pid, os.strerror(e)))
        return r

    pt(PTRACE_ATTACH)
    os.waitpid(pid, 0x40000000)  # __WALL: the attach stop
    regs = (ctypes.c_ulong * 27)()
    pt(PTRACE_GETREGS, 0, ctypes.addressof(regs))
    rip = regs[RIP]
    word = pt(PTRACE_PEEKTEXT, rip) & 0xFFFFFFFFFFFFFFFF
    word = (word & ~0xFFFF) | 0xFEEB  # little-endian: eb fe at rip
    if word >= 1 << 63:
        word -= 1 << 64
    pt(PTRACE_POKETEXT, rip, word)
    pt(PTRACE_DETACH)
    print("0x%x" % rip)


main()
