#!/usr/bin/env python3
"""clients.py - real EAS client request shapes (shapes.tsv) for t_clients.sh.

  clients.py run --port P --cafile F --shapes TSV --rec DIR --work DIR [--only NAME,...]
      For every shape, on one kept-alive TLS connection of its own: the shape's
      own request, then MoveItems and FolderCreate in the same form (which the
      test's rules scope to its DeviceId and DeviceType). One JSON line per
      request: shape, step, status, relayed (the backend answered), exact (the
      backend recorded the sent bytes plus only X-Forwarded-For/-Proto; null when
      not relayed), eas_error (X-MS-ASError), user (the Basic user).

  clients.py one --port P --cafile F --rec DIR --query Q [--user U]
      One POST with the plain query Q (EAS 14.1); one JSON line as above.

The requests are built here, independently of the gateway's parser: the base64
query per MS-ASHTTP 2.2.1.1.1.1 and DeviceInformation as XML encoded to WBXML by
libwbxml's xml2wbxml.
"""
import argparse
import base64
import json
import os
import struct
import subprocess
import sys
import time
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tlsreplay  # noqa: E402

CMDS = {
    "Sync": 0, "SendMail": 1, "SmartForward": 2, "SmartReply": 3, "GetAttachment": 4,
    "FolderSync": 9, "FolderCreate": 10, "FolderDelete": 11, "FolderUpdate": 12,
    "MoveItems": 13, "GetItemEstimate": 14, "MeetingResponse": 15, "Search": 16,
    "Settings": 17, "Ping": 18, "ItemOperations": 19, "Provision": 20,
    "ResolveRecipients": 21, "ValidateCert": 22,
}


def load(path):
    rows = []
    head = None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        f = line.split("\t")
        if head is None:
            head = f
            continue
        if len(f) != len(head):
            raise SystemExit("%s: %d fields, want %d: %s" % (path, len(f), len(head), line))
        r = dict(zip(head, f))
        r["x"] = {}
        if r["extra"] != "-":
            for item in r["extra"].split(","):
                k, _, v = item.partition("=")
                r["x"][k] = v
        rows.append(r)
    return rows


def user_of(i):
    return "client%02d@example.com" % i


def b64_query(s, cmd, user):
    x = s["x"]
    dev = bytes.fromhex(s["devid"][4:]) if s["devid"].startswith("hex:") else s["devid"].encode()
    typ = s["devtype"].encode()
    out = bytes([int(s["ver"].replace(".", "")), CMDS[cmd]])
    out += struct.pack("<H", int(x.get("lcid", "0x0409"), 16))
    out += bytes([len(dev)]) + dev
    out += (b"\x04" + struct.pack("<I", int(x["pk"]))) if "pk" in x else b"\x00"
    out += bytes([len(typ)]) + typ
    opt = (1 if "sis" in x else 0) | (2 if "amp" in x else 0)
    if opt:
        out += bytes([7, 1, opt])
    if "att" in x:
        out += bytes([0, len(x["att"])]) + x["att"].encode()
    if s["user"] == "param":
        out += bytes([8, len(user)]) + user.encode()
    return base64.b64encode(out).decode()


def plain_query(s, cmd, user):
    x = s["x"]
    parts = {"Cmd": cmd, "User": user.replace("@", "%40"), "DeviceId": s["devid"],
             "DeviceType": s["devtype"]}
    if s["user"] != "param":
        del parts["User"]
    order = ["User", "DeviceId", "DeviceType", "Cmd"] if x.get("order") == "ios" else \
        ["Cmd", "User", "DeviceId", "DeviceType"]
    q = "&".join("%s=%s" % (k, parts[k]) for k in order if k in parts)
    if "att" in x:
        q += "&AttachmentName=" + x["att"]
    if "sis" in x:
        q += "&SaveInSent=T"
    return q


def devinfo_body(s, work):
    if s["devinfo"] == "-":
        return b""
    model, _, osv = s["devinfo"].partition("|")
    xml = ('<?xml version="1.0" encoding="utf-8"?>\n'
           '<!DOCTYPE ActiveSync PUBLIC "-//MICROSOFT//DTD ActiveSync//EN" '
           '"http://www.microsoft.com/">\n'
           '<Settings xmlns="Settings:"><DeviceInformation><Set>'
           '<Model>%s</Model><OS>%s</OS><UserAgent>%s</UserAgent>'
           '</Set></DeviceInformation></Settings>\n' % (escape(model), escape(osv),
                                                         escape(s["ua"])))
    src = os.path.join(work, s["name"] + ".xml")
    dst = os.path.join(work, s["name"] + ".wbxml")
    with open(src, "w", encoding="utf-8") as f:
        f.write(xml)
    subprocess.run(["xml2wbxml", "-a", "-n", "-o", dst, src], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return open(dst, "rb").read()


def request(s, cmd, user, body):
    x = s["x"]
    if "rawq" in x and cmd == s["cmd"]:
        q = x["rawq"]
    elif "rawq" in x:  # same fixed head, other command code
        raw = bytearray(base64.b64decode(x["rawq"]))
        raw[1] = CMDS[cmd]
        q = base64.b64encode(bytes(raw)).decode()
    elif s["form"] == "b64":
        q = b64_query(s, cmd, user)
    else:
        q = plain_query(s, cmd, user)
    path = "/Microsoft-Server-ActiveSync" + x.get("path", "")
    h = ["POST %s?%s HTTP/1.1" % (path, q), "Host: mail.example.com"]
    if s["ua"] != "-":
        h.append("User-Agent: " + s["ua"])
    if s["form"] == "plain":
        h.append("MS-ASProtocolVersion: " + s["ver"])
        if "pk" in x:
            h.append("X-MS-PolicyKey: " + x["pk"])
        if "amp" in x:
            h.append("MS-ASAcceptMultiPart: T")
    if "wl" in x:
        h.append("X-MS-WL: " + x["wl"])
    h.append("Accept-Language: en-US")
    h.append("Content-Type: application/vnd.ms-sync.wbxml")
    h.append("Authorization: Basic " + base64.b64encode((user + ":secret").encode()).decode())
    h.append("Content-Length: %d" % len(body))
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def exact(sent, rec_dir, seq):
    """The backend's record equals what was sent plus the two forwarding headers."""
    path = os.path.join(rec_dir, seq + ".req")
    for _ in range(100):
        if os.path.exists(os.path.join(rec_dir, seq + ".meta")):
            break
        time.sleep(0.05)
    got = open(path, "rb").read()
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    added = [l for l in lines if l.startswith((b"X-Forwarded-For: ", b"X-Forwarded-Proto: "))]
    kept = [l for l in lines if l not in added]
    return len(added) == 2 and b"\r\n".join(kept) + b"\r\n\r\n" + body == sent


def exchange(rd, conn, data, rec):
    conn.sendall(data)
    resp = rd.response()
    if resp is None:
        return {"status": 0, "relayed": False, "exact": None, "eas_error": ""}
    seq = resp["headers"].get("x-request-seq")
    return {"status": resp["status"], "relayed": bool(seq),
            "exact": exact(data, rec, seq) if seq else None,
            "eas_error": resp["headers"].get("x-ms-aserror", "")}


def run(a):
    shapes = load(a.shapes)
    only = set(a.only.split(",")) if a.only else None
    bad = 0
    for i, s in enumerate(shapes):
        if only and s["name"] not in only:
            continue
        user = user_of(i)
        conn = tlsreplay.connect(argparse.Namespace(host="127.0.0.1", port=a.port,
                                                    cafile=a.cafile, sni="localhost",
                                                    timeout=20))
        rd = tlsreplay.Reader(conn)
        body = devinfo_body(s, a.work)
        for step, cmd in (("first", s["cmd"]), ("rule-id", "MoveItems"),
                          ("rule-type", "FolderCreate")):
            out = {"shape": s["name"], "step": step, "user": user}
            out.update(exchange(rd, conn, request(s, cmd, user, body if step == "first" else b""),
                                a.rec))
            bad += out["status"] == 0
            print(json.dumps(out), flush=True)
        conn.close()
    return 1 if bad else 0


def one(a):
    h = "\r\n".join(["POST /Microsoft-Server-ActiveSync?%s HTTP/1.1" % a.query,
                     "Host: mail.example.com", "User-Agent: probe/1.0",
                     "MS-ASProtocolVersion: 14.1",
                     "Authorization: Basic " +
                     base64.b64encode((a.user + ":secret").encode()).decode(),
                     "Content-Length: 0"])
    conn = tlsreplay.connect(argparse.Namespace(host="127.0.0.1", port=a.port, cafile=a.cafile,
                                                sni="localhost", timeout=20))
    out = {"query": a.query}
    out.update(exchange(tlsreplay.Reader(conn), conn, (h + "\r\n\r\n").encode(), a.rec))
    print(json.dumps(out), flush=True)
    return 0 if out["status"] else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    o = sub.add_parser("one")
    for q in (r, o):
        q.add_argument("--port", type=int, required=True)
        q.add_argument("--cafile", required=True)
        q.add_argument("--rec", required=True)
    r.add_argument("--shapes", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--only")
    o.add_argument("--query", required=True)
    o.add_argument("--user", default="probe@example.com")
    a = p.parse_args()
    return run(a) if a.what == "run" else one(a)


if __name__ == "__main__":
    sys.exit(main())
