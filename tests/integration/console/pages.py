#!/usr/bin/python3
"""pages.py - the console's pages beyond browser.py's walk (t_console_pages).

    pages.py CONFIG.json

CONFIG: what cdriver.py reads, and model_filter/by_model, user_filter/by_user
(a filter of the quarantine queue and the DeviceIds it must list, exactly),
throttled {user, device, class, burst, rate} (a phone over its budget),
incubating {user, device, type, ua, os} (an iPhone held for its OS version),
looping {user, device, command} (a phone the loop detector quarantined),
root_only / no_root {home, profile} (a HOME whose NSS store holds the test
root alone / nothing, and a fresh profile).

Prints one JSON line per check and a last {"done": true} (see cdriver.py).
"""
from cdriver import *  # noqa: F401,F403 - the shared driver and helpers
import re


def table_rows(tbl):
    """[{header: cell text}] of one <table> as the user reads it."""
    heads = [h.text for h in tbl.find_elements(By.CSS_SELECTOR, "thead th")]
    return [dict(zip(heads, [c.text for c in r.find_elements(By.CSS_SELECTOR, "td")]))
            for r in tbl.find_elements(By.CSS_SELECTOR, "tbody tr")]


def queue_filter(field, value):
    """Type one filter into the quarantine queue (the others empty), click
    Filter; the DeviceIds listed."""
    if not drv.current_url.endswith("#quarantine"):
        go("quarantine")
    for f in ("q-os", "q-model", "q-user"):
        drv.find_element(By.ID, f).clear()
    drv.find_element(By.ID, field).send_keys(value)
    drv.execute_script("document.getElementById('status').textContent = ''")
    drv.find_element(By.ID, "q-filter").click()
    wait.until(lambda d: "in quarantine" in d.find_element(By.ID, "status").text)
    return sorted(r.get_attribute("data-device")
                  for r in drv.find_elements(By.CSS_SELECTOR, "#content tbody tr"))


def version_row(os_key):
    for r in drv.find_elements(By.CSS_SELECTOR, "#content tbody tr"):
        tds = r.find_elements(By.CSS_SELECTOR, "td")
        if tds and tds[0].text == os_key:
            return r
    return None


try:
    H, A = cfg["accounts"]["helpdesk"], cfg["accounts"]["admin"]
    login(*H)

    # 1. the queue's filters by model and by user
    got = queue_filter("q-model", cfg["model_filter"])
    out("the queue filtered by model %r lists exactly %s" % (cfg["model_filter"], cfg["by_model"]),
        got == sorted(cfg["by_model"]), got)
    shot("quarantine-model")
    got = queue_filter("q-user", cfg["user_filter"])
    out("the queue filtered by user %r lists exactly %s" % (cfg["user_filter"], cfg["by_user"]),
        got == sorted(cfg["by_user"]), got)
    shot("quarantine-user")

    # 2. one device's page: throttle state with its budget, last requests
    t = cfg["throttled"]
    dev = "device/%s/%s" % (t["user"], t["device"])
    go(dev)
    # its history as the test's requests left it (the page keeps the last few)
    hist = table_rows(drv.find_element(By.ID, "dev-history")) if drv.find_elements(
        By.ID, "dev-history") else []
    # Three more Syncs, each refused: its budget stays empty for well over
    # the time this page takes (rate 0.2/s: about 5 s per Sync owed).
    more = [eas_sync({"user": t["user"], "device": t["device"], "type": t["type"], "ua": t["ua"]})[0]
            for _ in range(3)]
    go("quarantine")
    go(dev)
    thr = table_rows(drv.find_element(By.ID, "dev-throttle")) if drv.find_elements(
        By.ID, "dev-throttle") else []
    row = thr[0] if len(thr) == 1 else {}
    out("the device page says in words that the phone is throttled, and until when "
        "(not the stage's internal name; its Syncs just now: %s)" % more,
        more == [503] * 3 and re.fullmatch(r"throttled \(until \d\d:\d\d:\d\d\)", row.get("State", "")) and
        row.get("Last event") == "over its budget" and row.get("Class") == t["class"], thr)
    st, body = fetch("GET", "/api/run?a=throttle&a=show&a=%s&a=%s&a=--format&a=json" % (t["user"], t["device"]))
    api = json.loads(json.loads(body)["output"]) if st == 200 else []
    out("...while the JSON API keeps the machine names (state ok, last_event throttled)",
        len(api) == 1 and api[0]["state"] == "ok" and api[0]["last_event"] == "throttled",
        "%d %s" % (st, body[:300]))
    budget = "%g requests, then %g/s" % (t["burst"], t["rate"])
    refused = row.get("Seen/refused by command", "")
    out("...with its budget (%s) and its refused Syncs" % budget,
        row.get("Budget") == budget and refused.startswith("Sync ") and
        int(refused.split()[1].split("/")[1]) > 0, row)
    answers = [(h["Command"], h["Status"], h["Access"]) for h in hist if h.get("Kind") == "answer"]
    whens = [h["When"] for h in hist]
    held, refused = ("Sync", "200", "quarantine"), ("Sync", "503", "quarantine")
    out("its last answers in order: FolderSync relayed (200), then Syncs held in quarantine "
        "(200) and refused over its budget (503)",
        whens == sorted(whens) and answers[:1] == [("FolderSync", "200", "quarantine")] and
        held in answers and refused in answers and answers.index(held) < answers.index(refused),
        answers)
    out("its decisions over time: quarantined by default",
        any(h.get("Kind") == "decision" and h.get("Access") == "quarantine" and
            h.get("Reason") == "DEFAULT" for h in hist),
        [(h["Kind"], h["Command"], h["Access"], h["Reason"]) for h in hist])
    drv.execute_script("document.getElementById('dev-fields').scrollIntoView()")
    drv.execute_script("window.scrollBy(0, 380)")
    shot("device-throttled")

    # 3. an OS version approved from the console: not by a helpdesk...
    inc = cfg["incubating"]
    go("versions")
    r = version_row(inc["os"])
    out("a helpdesk sees %s incubating on the OS versions page, with no Approve button" % inc["os"],
        r is not None and "incubating" in r.text and
        not drv.find_elements(By.CSS_SELECTOR, "#content tbody button"),
        r.text if r else rows_text())
    shot("versions-helpdesk")
    st, sess = fetch("GET", "/api/session")
    token = json.loads(sess)["csrf"]
    st, body = fetch("POST", "/api/run", "a=versions&a=approve&a=" + inc["os"].replace(" ", "+"), token)
    out("a helpdesk's forged approval POST (with its own CSRF token) gets 403",
        st == 403 and "admin" in body, "%d %s" % (st, body))
    before = backend_saw(inc["device"])
    st0, be0 = eas_sync(inc)
    out("before the approval the iPhone's Sync is held (answered by the gateway)",
        be0 == "" and backend_saw(inc["device"]) == before, "status %d X-Backend %r" % (st0, be0))
    collect_log()
    logout()

    # ...by an admin, whose click lets the iPhone through
    login(*A)
    go("versions")
    vrows = [(tr.find_elements(By.CSS_SELECTOR, "td")[0].text, tr.find_elements(By.CSS_SELECTOR, "td")[3].text,
              [b.text for b in tr.find_elements(By.CSS_SELECTOR, "button")])
             for tr in drv.find_elements(By.CSS_SELECTOR, "#content tbody tr")]
    want = {"incubating": ["Approve"], "approved": ["Revoke"], "released": []}
    released = [v for v, s, _ in vrows if s == "released"]
    out("an admin sees Approve only on incubating versions, Revoke only on approved ones, "
        "nothing on released ones (e.g. %s)" % released[:1],
        released and all(b == want.get(s) for _, s, b in vrows), vrows)
    token = json.loads(fetch("GET", "/api/session")[1])["csrf"]
    for verb, os_key, why in (("approve", released[0] if released else "?", "not held"),
                              ("revoke", inc["os"], "not approved")):
        st, body = fetch("POST", "/api/run", "a=versions&a=%s&a=%s" % (verb, os_key.replace(" ", "+")), token)
        out("an admin's forged POST to %s %s (nothing to %s) gets 409 with the reason" % (verb, os_key, verb),
            st == 409 and why in body, "%d %s" % (st, body))
    st, body = fetch("GET", "/api/run?a=versions&a=list&a=--format&a=json")
    vl = {v["os"]: v["state"] for v in json.loads(json.loads(body)["output"])["versions"]} if st == 200 else {}
    out("...and changed nothing (%s still released, %s still incubating)" % (released[:1], inc["os"]),
        released and vl.get(released[0]) == "released" and vl.get(inc["os"]) == "incubating", vl)
    r = version_row(inc["os"])
    btn = r.find_elements(By.CSS_SELECTOR, "button") if r else []
    if btn and btn[0].text == "Approve":
        drv.execute_script("document.body.dataset.loaded = ''")
        btn[0].click()
        loaded("versions")
    r = version_row(inc["os"])
    out("an admin approves %s with its Approve button; the page shows it approved" % inc["os"],
        bool(btn) and r is not None and "approved" in r.find_elements(By.CSS_SELECTOR, "td")[3].text
        and r.find_element(By.CSS_SELECTOR, "button").text == "Revoke",
        r.text if r else rows_text())
    shot("versions-approved")
    st, be = eas_sync(inc)
    for _ in range(50):  # the backend writes its record as it answers: a bounded wait
        if backend_saw(inc["device"]) > before:
            break
        time.sleep(0.1)
    out("after the approval the iPhone's next Sync is relayed (the backend records it)",
        st == 200 and be != "" and backend_saw(inc["device"]) == before + 1,
        "status %d X-Backend %r backend records %d -> %d" % (st, be, before, backend_saw(inc["device"])))
    go("audit")
    out("the audit page shows the approval, made by the admin",
        any("versions approve " + inc["os"] in x and A[0] in x for x in rows_text()), rows_text()[:3])

    # 4. the looping phone on the throttled page
    lp = cfg["looping"]
    go("throttle")
    rows = [x for x in table_rows(drv.find_element(By.CSS_SELECTOR, "#content table"))
            if x.get("Device") == lp["device"]] if drv.find_elements(By.CSS_SELECTOR, "#content table") else []
    out("the throttled page lists the looping phone as loop-quarantined, looping on %s" % lp["command"],
        len(rows) == 1 and re.fullmatch(r"loop-quarantined \(until \d\d:\d\d:\d\d\)", rows[0].get("State", "")) and
        rows[0].get("Last event") == "loop-quarantined" and rows[0].get("Looping command") == lp["command"],
        rows or rows_text())
    shot("throttle-looping")
    collect_log()
    out("no Content-Security-Policy violation or script error in the browser console",
        not console_errors, console_errors[:3])
    drv.quit()

    # 5. Chromium trusts the console given the test root alone (no SPKI
    # exception), and refuses it without the root
    for key, want in (("root_only", True), ("no_root", False)):
        d2 = chromium(cfg[key]["profile"], home=cfg[key]["home"])
        d2.set_page_load_timeout(30)
        try:
            d2.get(URL + "/")
            WebDriverWait(d2, 20).until(lambda d: d.find_elements(By.ID, "login-user") and
                                        d.find_element(By.ID, "login-user").is_displayed() or
                                        "not private" in d.find_element(By.TAG_NAME, "body").text)
            text = d2.find_element(By.TAG_NAME, "body").text
            form = bool(d2.find_elements(By.ID, "login-user"))
            if want:
                d2.save_screenshot(os.path.join(cfg["outdir"], "root-only-login.png"))
                nav = d2.find_element(By.ID, "nav").is_displayed()
                out("Chromium with only the test root in its store opens the console (no warning), "
                    "at its login form with no page links before logging in",
                    form and "not private" not in text and d2.title == "easgate console" and not nav,
                    "title %r, nav shown %s" % (d2.title, nav))
            else:
                out("Chromium without the root refuses the console's certificate (its warning page)",
                    not form and "not private" in text, text[:200])
        finally:
            d2.quit()
    print(json.dumps({"done": True}), flush=True)
except TimeoutException as e:
    shot("timeout")
    out("browser step finished in time", False, "timeout: %s; page: %s" % (e, drv.current_url))
    print(json.dumps({"done": True}), flush=True)
except Exception as e:  # noqa: BLE001
    try:
        shot("crash")
    except Exception:  # noqa: BLE001 - the driver may be gone already
        pass
    print("CRASH %r" % e, flush=True)
    sys.exit(1)
