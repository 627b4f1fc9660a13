#!/usr/bin/python3
"""cdriver.py - what the console's browser tests share (browser.py, pages.py):
the configuration (sys.argv[1], JSON: url, spki, outdir, profile, gw, ca,
rec, accounts), a headless Chromium logged into nothing yet, and helpers to
log in, open a page and wait for it, make requests from the page, send a
phone's Sync and read what the demo backend recorded.

A test prints one JSON line per check (out()) and a last {"done": true};
it exits 77 with a reason when Chromium cannot start.
"""
import glob
import http.client
import json
import os
import ssl
import sys
import time  # noqa: F401 - for the tests that import * from here

cfg = json.load(open(sys.argv[1]))


def out(check, ok, detail=""):
    print(json.dumps({"check": check, "ok": bool(ok), "detail": str(detail)[:600]}), flush=True)


try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException, TimeoutException  # noqa: F401
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: F401
except ImportError as e:
    print("SKIP python3-selenium missing: %s" % e)
    sys.exit(77)


def chromium(profile, spki=None, home=None):
    """A headless Chromium. With spki it trusts exactly that key (the test's
    console certificate); without, only what its NSS store under HOME holds
    (home: a directory whose .pki/nssdb the caller filled)."""
    opts = webdriver.ChromeOptions()
    for a in ("--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
              "--disable-background-networking --disable-component-update --disable-sync "
              "--window-size=1400,900").split():
        opts.add_argument(a)
    opts.add_argument("--user-data-dir=" + profile)
    if spki:
        opts.add_argument("--ignore-certificate-errors-spki-list=" + spki)
    opts.binary_location = "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = dict(os.environ, HOME=home) if home else None
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver", env=env), options=opts)


try:
    drv = chromium(cfg["profile"], cfg["spki"])
except Exception as e:  # noqa: BLE001 - any failure to start is a reason to report
    print("SKIP chromium cannot start here: %s" % str(e).splitlines()[0])
    sys.exit(77)
drv.set_page_load_timeout(30)
URL = cfg["url"]
wait = WebDriverWait(drv, 20)
console_errors = []


def shot(name):
    path = os.path.join(cfg["outdir"], name + ".png")
    drv.save_screenshot(path)
    return path


def collect_log():
    for e in drv.get_log("browser"):
        m = e.get("message", "")
        # 401 before logging in and the deliberate 403s are expected network errors
        if "Content Security Policy" in m or "Refused to" in m or e.get("source") == "javascript":
            console_errors.append(m)


def loaded(page):
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == page)


def go(page):
    drv.execute_script("document.body.dataset.loaded = ''")
    drv.get(URL + "/#" + page)
    loaded(page.split("/")[0])


def login(name, pw):
    drv.get(URL + "/")
    wait.until(EC.visibility_of_element_located((By.ID, "login-user")))
    shot("login") if name == cfg["accounts"]["helpdesk"][0] else None
    drv.find_element(By.ID, "login-user").send_keys(name)
    drv.find_element(By.ID, "login-password").send_keys(pw)
    drv.find_element(By.ID, "login-submit").click()
    loaded("quarantine")


def logout():
    drv.find_element(By.ID, "logout").click()
    wait.until(EC.visibility_of_element_located((By.ID, "login-user")))


def fetch(method, path, body=None, token=None):
    """A request from the page itself (same origin, the session cookie)."""
    return drv.execute_async_script("""
        const [method, path, body, token, done] = arguments;
        const h = {'Content-Type': 'application/x-www-form-urlencoded'};
        if (token) h['X-CSRF-Token'] = token;
        fetch(path, {method, headers: h, body: body || undefined, credentials: 'same-origin'})
          .then(async r => done([r.status, await r.text()])).catch(e => done([0, String(e)]));
    """, method, path, body, token)


def eas_sync(p):
    """One Sync from the phone, as the phone would send it; (status, X-Backend)."""
    host, port = cfg["gw"].split(":")
    ctx = ssl.create_default_context(cafile=cfg["ca"])
    c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=20)
    q = "Cmd=Sync&User=%s&DeviceId=%s&DeviceType=%s" % (p["user"], p["device"], p["type"])
    c.request("POST", "/Microsoft-Server-ActiveSync?" + q, body=b"", headers={
        "Authorization": "Basic " + __import__("base64").b64encode(
            (p["user"] + ":secret").encode()).decode(),
        "User-Agent": p["ua"], "MS-ASProtocolVersion": "14.1",
        "Content-Type": "application/vnd.ms-sync.wbxml"})
    r = c.getresponse()
    r.read()
    return r.status, r.getheader("X-Backend") or ""


def backend_saw(device):
    n = 0
    for m in glob.glob(os.path.join(cfg["rec"], "*.meta")):
        t = open(m, errors="replace").read()
        if "DeviceId=" + device in t and "Cmd=Sync" in t:
            n += 1
    return n


def rows_text(selector="#content tbody tr"):
    return [r.text for r in drv.find_elements(By.CSS_SELECTOR, selector)]
