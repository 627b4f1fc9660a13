#!/usr/bin/python3
"""webhook_sink.py - a local webhook receiver for t_notify.

    webhook_sink.py PORT SECRET_FILE OUT.jsonl [BODY_DIR]

Accepts POST on 127.0.0.1:PORT, recomputes HMAC-SHA256 of the body with the
secret (the file's first line) and appends one line per request to OUT.jsonl:
{"valid": true|false, "events": N, "kinds": {...}}. Answers 200 either way
(the test judges by the lines), with the request's path ("path"). Writes
OUT.jsonl.ready once it listens. With BODY_DIR, each body whose signature
is valid is also kept there as <n>.json (n counts from 1; the line's "body"
names it), for tests that read the events' fields.
"""
import hashlib
import hmac
import http.server
import json
import sys

port, secret_file, out = sys.argv[1:4]
body_dir = sys.argv[4] if len(sys.argv) > 4 else None
kept = [0]
secret = open(secret_file, "rb").read().splitlines()[0]


class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sig = self.headers.get("X-Easgate-Signature", "")
        want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(sig, want)
        rec = {"valid": valid, "events": 0, "kinds": {}, "path": self.path}
        try:
            j = json.loads(body)
            rec["events"] = len(j["events"])
            for e in j["events"]:
                rec["kinds"][e["kind"]] = rec["kinds"].get(e["kind"], 0) + 1
        except Exception as e:  # noqa: BLE001
            rec["error"] = str(e)
        if valid and body_dir:
            kept[0] += 1
            rec["body"] = "%d.json" % kept[0]
            with open("%s/%s" % (body_dir, rec["body"]), "wb") as f:
                f.write(body)
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


s = http.server.HTTPServer(("127.0.0.1", int(port)), H)
open(out + ".ready", "w").close()
s.serve_forever()
