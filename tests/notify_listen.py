#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""notify_listen.py - a stand-in for systemd's NOTIFY_SOCKET, for tests.

    notify_listen.py SOCKET OUT.jsonl [--control PATH] [--timeout S]

Binds an AF_UNIX datagram socket at SOCKET (a path; "@name" = abstract) and
writes one JSON line per datagram received to OUT.jsonl, flushed at once:

    {"mono_us": CLOCK_MONOTONIC at receipt, "pid": sender pid, "uid": ...,
     "fields": {"READY": "1", ...}, "raw": "READY=1\\nSTATUS=..."}

The sender's pid comes from SCM_CREDENTIALS (the kernel's word, as systemd
uses it for NotifyAccess=main). With --control, the first READY=1 is
followed at once by a connect() to that UNIX stream socket, and the line gets
"control_ok": true/false: READY=1 must mean the daemon is usable.
SOCKET exists (bound) before OUT.jsonl is created, so a test can wait for
OUT.jsonl and then start the daemon. Exits on SIGTERM/SIGINT or after
--timeout seconds (default 120).
"""
import argparse
import json
import os
import signal
import socket
import struct
import sys
import time


def parse_fields(text):
    fields = {}
    for line in text.split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            fields[k] = v
    return fields


def control_ok(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("out")
    ap.add_argument("--control")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    addr = "\0" + a.socket[1:] if a.socket.startswith("@") else a.socket
    if not a.socket.startswith("@") and os.path.exists(a.socket):
        os.unlink(a.socket)
    s.bind(addr)
    if not a.socket.startswith("@"):
        # As systemd's own: the daemon may have dropped to another user.
        os.chmod(a.socket, 0o666)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    creds_len = struct.calcsize("3i")
    deadline = time.monotonic() + a.timeout
    saw_ready = False
    with open(a.out, "w") as out:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return 0
            s.settimeout(left)
            try:
                data, anc, _flags, _addr = s.recvmsg(4096, socket.CMSG_SPACE(creds_len))
            except socket.timeout:
                return 0
            now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            pid = uid = -1
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, uid, _gid = struct.unpack("3i", cdata[:creds_len])
            text = data.decode("utf-8", "replace")
            rec = {"mono_us": now_us, "pid": pid, "uid": uid,
                   "fields": parse_fields(text), "raw": text}
            if a.control and not saw_ready and rec["fields"].get("READY") == "1":
                saw_ready = True
                rec["control_ok"] = control_ok(a.control)
            out.write(json.dumps(rec) + "\n")
            out.flush()


if __name__ == "__main__":
    sys.exit(main())
