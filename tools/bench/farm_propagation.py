#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""farm_propagation.py - how long an admin change takes to act on another node.

    farm_propagation.py --port C_PORT --cafile ROOT.pem --changes 1000
        (--db "psql args..." | --easctl "EASCTL -s A_SOCKET")
        [--user propuser --device PROP1]

The device must exist in the farm (a FolderSync relayed once). Each change
toggles it between blocked and decided-by-the-rules (allowed), either
directly in the database (--db: psql UPDATE ... RETURNING clock_timestamp(),
the change's time as the database saw it) or through another node (--easctl:
`device block|clear`, timed from the moment easctl returns: committed). Then
the device's Sync goes to node C over one kept-alive TLS connection, again
and again, until C answers the new way (403 from the gateway / 200 from the
backend): the propagation is the time of that answer minus the change's
time, so it includes everything up to C's next request deciding with it
(NOTIFY, pull, C's snapshot, the worker's generation check), and at most one
request round trip more. Prints JSON: p50, p90, p99, max in ms, and how many
requests were made.
"""
import argparse
import base64
import http.client
import json
import shlex
import ssl
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--db")
    ap.add_argument("--easctl")
    ap.add_argument("--user", default="propuser")
    ap.add_argument("--device", default="PROP1")
    a = ap.parse_args()
    if bool(a.db) == bool(a.easctl) or a.changes > 5000:
        sys.exit("farm_propagation.py: one of --db or --easctl; at most 5000 changes")
    ctx = ssl.create_default_context(cafile=a.cafile)
    c = http.client.HTTPSConnection("127.0.0.1", a.port, context=ctx, timeout=10)
    auth = "Basic " + base64.b64encode(("%s:x" % a.user).encode()).decode()
    path = ("/Microsoft-Server-ActiveSync?Cmd=Sync&User=%s&DeviceId=%s&DeviceType=FarmPhone"
            % (a.user, a.device))
    hdrs = {"Authorization": auth, "MS-ASProtocolVersion": "12.1", "User-Agent": "FarmPhone/1.0"}

    def blocked():
        c.request("POST", path, body=b"\x03\x01\x6a\x00", headers=hdrs)
        r = c.getresponse()
        r.read()
        if r.status == 403 and not r.getheader("X-Backend"):
            return True
        if r.status == 200 and r.getheader("X-Backend"):
            return False
        sys.exit("unexpected answer %d" % r.status)

    lat = []
    polls = 0
    for i in range(a.changes):
        block = i % 2 == 0
        if a.db:
            sql = ("UPDATE devices SET admin_state = %d, admin_at = admin_at + 1 WHERE device_id = '%s'"
                   " RETURNING extract(epoch FROM clock_timestamp())" % (2 if block else 0, a.device))
            out = subprocess.run(shlex.split(a.db) + ["-c", sql], capture_output=True, text=True)
            if out.returncode:
                sys.exit("psql: " + out.stderr)
            t0 = float(out.stdout.split()[0])
        else:
            out = subprocess.run(shlex.split(a.easctl) + ["device", "block" if block else "clear",
                                 a.device, "--user", a.user], capture_output=True, text=True)
            if out.returncode:
                sys.exit("easctl: " + out.stdout + out.stderr)
            t0 = time.time()
        deadline = time.time() + 5
        while True:
            polls += 1
            b = blocked()
            t1 = time.time()
            if b == block:
                break
            if t1 > deadline:
                sys.exit("change %d did not reach the node within 5 s" % i)
        lat.append(max(0.0, (t1 - t0) * 1000))
    lat.sort()

    def p(q):
        return round(lat[min(len(lat) - 1, int(q * (len(lat) - 1) + 0.5))], 2)
    print(json.dumps({"changes": len(lat), "p50_ms": p(0.5), "p90_ms": p(0.9), "p99_ms": p(0.99),
                      "max_ms": round(lat[-1], 2), "requests": polls,
                      "via": "database" if a.db else "easctl on another node"}))


if __name__ == "__main__":
    main()
