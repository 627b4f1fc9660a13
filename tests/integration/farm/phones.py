#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
"""phones.py - a bounded load of phones spread over the nodes of a farm.

    phones.py --ports P1,P2,P3 --cafile ROOT.pem [--phones 200] [--prefix FARM]
              [--spread 10] [--duration 20] [--gap-ms 600,1000] [--stop-file F]
              [--proto 12.1] [--type FarmPhone]

Phone i (user farm<i>, DeviceId <prefix><i>) starts at i * spread / phones
seconds, sends a FolderSync, then Syncs with a random pause of --gap-ms
between them, each request to the next node in turn (phone i starts at node
i mod n): every phone is seen by every node, as behind an L4 balancer. Each
phone keeps one TLS connection per node (kept alive; reconnects when the
node closes one). The run stops after --duration seconds or when --stop-file
appears; in-flight requests finish.

A request is ok when it is answered 2xx by the backend (X-Backend present);
anything else is a failure: no answer, reset, TLS error, another status, an
answer the gateway made itself. Prints one JSON object: per node ok and
failure counts with the time (s since start) of each node's first and last
failure, the first failures, how many phones had at least one ok answer, and
per phone the time of its first ok answer; t0_wall is the wall-clock time
(unix s) the run's times count from.
"""
import argparse
import base64
import http.client
import json
import os
import random
import ssl
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--sni", default="localhost")
    ap.add_argument("--phones", type=int, default=200)
    ap.add_argument("--prefix", default="FARM")
    ap.add_argument("--spread", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--gap-ms", default="600,1000")
    ap.add_argument("--stop-file")
    ap.add_argument("--proto", default="12.1")
    ap.add_argument("--type", default="FarmPhone")
    a = ap.parse_args()
    if a.phones > 2000 or a.duration > 300:
        sys.exit("phones.py: at most 2000 phones and 300 s")
    ports = [int(p) for p in a.ports.split(",")]
    gmin, gmax = (int(x) for x in a.gap_ms.split(","))
    ctx = ssl.create_default_context(cafile=a.cafile)
    t0 = time.monotonic()
    t0_wall = time.time()
    lock = threading.Lock()
    nodes = {str(p): {"ok": 0, "fail": 0, "first_fail": None, "last_fail": None} for p in ports}
    failures = []
    first_ok = {}

    def stopped():
        return time.monotonic() - t0 >= a.duration or (a.stop_file and os.path.exists(a.stop_file))

    def phone(i):
        dev = "%s%05d" % (a.prefix, i)
        user = "farm%05d" % i
        auth = "Basic " + base64.b64encode(("%s:secret" % user).encode()).decode()
        conns = {}
        k = i
        cmd = "FolderSync"
        while not stopped():
            port = ports[k % len(ports)]
            k += 1
            c = conns.get(port)
            if c is None:
                c = http.client.HTTPSConnection(a.host, port, context=ctx, timeout=10)
                conns[port] = c
            path = ("/Microsoft-Server-ActiveSync?Cmd=%s&User=%s&DeviceId=%s&DeviceType=%s"
                    % (cmd, user, dev, a.type))
            hdrs = {"Authorization": auth, "MS-ASProtocolVersion": a.proto,
                    "User-Agent": "FarmPhone/1.0", "Content-Type": "application/vnd.ms-sync.wbxml",
                    "Host": a.sni}
            t = time.monotonic() - t0
            why = None
            for attempt in (0, 1):
                reused = c.sock is not None
                try:
                    c.request("POST", path, body=b"\x03\x01\x6a\x00", headers=hdrs)
                    r = c.getresponse()
                    r.read()
                    if not (200 <= r.status < 300 and r.getheader("X-Backend")):
                        why = "status %d%s" % (r.status, "" if r.getheader("X-Backend") else
                                                " from the gateway")
                    if r.getheader("Connection", "").lower() == "close":
                        c.close()
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                    # A kept-alive connection the node closed while idle is
                    # retried once on a new one, as phones do; a reset of a
                    # request in flight on a fresh connection is a failure.
                    c.close()
                    if attempt == 0 and reused:
                        continue
                    why = "%s: %s" % (type(e).__name__, e)
                    break
                except Exception as e:  # noqa: BLE001 - any other error is a failure too
                    c.close()
                    why = "%s: %s" % (type(e).__name__, e)
                    break
            with lock:
                n = nodes[str(port)]
                if why:
                    n["fail"] += 1
                    n["first_fail"] = n["first_fail"] if n["first_fail"] is not None else round(t, 2)
                    n["last_fail"] = round(t, 2)
                    if len(failures) < 20:
                        failures.append({"t": round(t, 2), "port": port, "device": dev, "cmd": cmd,
                                         "why": why})
                else:
                    n["ok"] += 1
                    first_ok.setdefault(dev, round(t, 2))
            if not why:
                cmd = "Sync"
            time.sleep(random.uniform(gmin, gmax) / 1000.0)
        for c in conns.values():
            c.close()

    threads = []
    for i in range(a.phones):
        delay = i * a.spread / a.phones - (time.monotonic() - t0)
        if delay > 0:
            time.sleep(delay)
        if stopped():
            break
        th = threading.Thread(target=phone, args=(i,), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join(timeout=a.duration + 30)
    out = {"t0_wall": t0_wall, "phones": a.phones, "started": len(threads), "phones_ok": len(first_ok),
           "nodes": nodes, "failures": failures, "first_ok": first_ok,
           "elapsed": round(time.monotonic() - t0, 2)}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
