#!/usr/bin/env python3
"""wbxml-paths.py - decode an ActiveSync WBXML body with libwbxml's wbxml2xml
(an independent decoder, not easgate's) and print every leaf as one line:

    Provision/Status=1
    Provision/Policies/Policy/PolicyKey=1234
    FolderSync/Changes/Add[3]/DisplayName=INBOX

Namespaces ("Provision:", "Settings:") are dropped; an element that has
siblings with the same name gets its 0-based position in brackets, so the
fields of one folder stay together. Shell tests grep these lines.

usage: wbxml-paths.py FILE.wbxml       exit 1 when the body does not decode
"""
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def local(tag):
    return tag.rsplit("}", 1)[-1]


def walk(el, path, out):
    kids = list(el)
    if not kids:
        out.append("%s=%s" % (path, (el.text or "").strip()))
        return
    names = [local(k.tag) for k in kids]
    seen = {}
    for k, n in zip(kids, names):
        i = seen.get(n, 0)
        seen[n] = i + 1
        p = "%s/%s" % (path, n) + ("[%d]" % i if names.count(n) > 1 else "")
        walk(k, p, out)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    # wbxml2xml writes to a file; its -o - mixes the "succeeded" line into stdout.
    fd, xml = tempfile.mkstemp(suffix=".xml")
    os.close(fd)
    try:
        r = subprocess.run(["wbxml2xml", "-l", "ACTIVESYNC", "-m", "0", "-o", xml, sys.argv[1]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            sys.stderr.write("wbxml-paths: %s" % r.stdout.decode(errors="replace"))
            return 1
        root = ET.parse(xml).getroot()
    except ET.ParseError as e:
        print("wbxml2xml output is not XML: %s" % e, file=sys.stderr)
        return 1
    finally:
        os.unlink(xml)
    out = []
    walk(root, local(root.tag), out)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
