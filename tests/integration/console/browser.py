#!/usr/bin/python3
"""browser.py - drive the easgate console in headless Chromium (t_console).

    browser.py CONFIG.json

CONFIG: url, spki (base64 SHA-256 of the console certificate's key, so
Chromium trusts exactly that certificate), outdir (screenshots), profile
(a fresh --user-data-dir), gw ("host:port" of the gateway), ca (root PEM),
rec (the demo backend's record dir), accounts {helpdesk, viewer, admin:
[name, password]}, p1 (the phone that just synced: user, device, type, ua),
ios61 (DeviceIds), xss {device, model}, throttled (a DeviceId over its budget),
unauth (a DeviceId seen, never authenticated by the backend).

Prints one JSON line per check: {"check": ..., "ok": true|false, "detail": ...}
and a last line {"done": true}. Exits 77 with a reason when Chromium cannot
start, 0 when every step ran (the verdicts are in the lines), 1 when a step
crashed.
"""
from cdriver import *  # noqa: F401,F403 - the shared driver and helpers

try:
    H, V, A = cfg["accounts"]["helpdesk"], cfg["accounts"]["viewer"], cfg["accounts"]["admin"]
    p1 = cfg["p1"]

    # 1. helpdesk: the phone that just synced waits in the quarantine queue
    login(*H)
    row = drv.find_elements(By.CSS_SELECTOR, "#content tr[data-device='%s']" % p1["device"])
    out("helpdesk sees the phone that just synced in the quarantine queue", len(row) == 1,
        rows_text())
    shot("quarantine")

    # 2. Approve it with one click; its next Sync is relayed
    before = backend_saw(p1["device"])
    st0, be0 = eas_sync(p1)
    out("before approval its Sync is answered by the gateway, not relayed",
        be0 == "" and backend_saw(p1["device"]) == before, "status %d X-Backend %r" % (st0, be0))
    row[0].find_element(By.CSS_SELECTOR, "button.approve").click()
    wait.until(lambda d: "approve: 1 device" in d.find_element(By.ID, "status").text)
    st, be = eas_sync(p1)
    time.sleep(0.2)
    out("after Approve its next Sync is relayed (the backend sees it)",
        st == 200 and be != "" and backend_saw(p1["device"]) == before + 1,
        "status %d X-Backend %r backend records %d -> %d" % (st, be, before,
                                                             backend_saw(p1["device"])))
    loaded("quarantine")

    # 3. a POST without the CSRF token: 403, and nothing changes
    target = cfg["ios61"][0]
    st, body = fetch("POST", "/api/run", "a=device&a=approve&a=" + target)
    out("a POST without the CSRF token gets 403", st == 403, "%d %s" % (st, body))

    # 4. the hostile DeviceModel is text, never markup
    go("devices")
    cells = [c.text for c in drv.find_elements(By.CSS_SELECTOR, "#content td")]
    try:
        drv.switch_to.alert
        alert = True
    except NoAlertPresentException:
        alert = False
    imgs = drv.execute_script("return document.querySelectorAll('#content img').length")
    out("the DeviceModel %r shows as text, with no alert and no <img>" % cfg["xss"]["model"],
        cfg["xss"]["model"] in cells and not alert and imgs == 0,
        "alert=%s imgs=%s" % (alert, imgs))
    shot("devices")
    csv = drv.find_element(By.ID, "d-csv").get_attribute("href")
    out("the devices page links its CSV and JSON exports", csv.endswith("/export/devices.csv?"), csv)
    listed = [r.get_attribute("data-device") for r in
              drv.find_elements(By.CSS_SELECTOR, "#content tbody tr")]
    Select(drv.find_element(By.ID, "d-seen")).select_by_value("unauthenticated")
    drv.find_element(By.ID, "d-filter").click()
    wait.until(lambda d: "seen without authenticating" in d.find_element(By.ID, "status").text)
    seen = [r.get_attribute("data-device") for r in
            drv.find_elements(By.CSS_SELECTOR, "#content tbody tr")]
    csv = drv.find_element(By.ID, "d-csv").get_attribute("href")
    out("the devices page lists the phone seen without authenticating apart from the inventory",
        cfg["unauth"] in seen and cfg["unauth"] not in listed and p1["device"] not in seen and
        p1["device"] in listed and csv.endswith("unauthenticated=1"),
        "inventory %s; seen %s; %s" % (listed, seen, csv))
    shot("devices-unauthenticated")
    go("device/%s/%s" % (cfg["unauth_user"], cfg["unauth"]))
    fields = [e.text for e in drv.find_elements(By.CSS_SELECTOR, "#dev-fields div")]
    out("its page says it is not authenticated and offers nothing to approve or block",
        bool(drv.find_elements(By.ID, "dev-unauth")) and
        not drv.find_elements(By.ID, "dev-approve") and
        "Authenticated" in fields and fields[fields.index("Authenticated") + 1] == "no",
        fields[-4:])

    # 5. dry run of a rule lists exactly the iOS 6.1 devices
    go("rules")
    drv.find_element(By.ID, "rule-text").send_keys('block DeviceOS like "iOS 6.1*"')
    drv.find_element(By.ID, "rule-dryrun").click()
    wait.until(lambda d: "Dry run of" in d.find_element(By.ID, "status").text)
    got = sorted(r.find_elements(By.CSS_SELECTOR, "td")[1].text
                 for r in drv.find_elements(By.CSS_SELECTOR, "#dryrun tr.dry-row"))
    out('the dry run of block DeviceOS like "iOS 6.1*" lists exactly the iOS 6.1 devices',
        got == sorted(cfg["ios61"]), "got %s want %s" % (got, sorted(cfg["ios61"])))
    out("a helpdesk account gets no Save button for rules",
        not drv.find_elements(By.ID, "rule-save"), "")
    shot("rules")

    # 6. every other page renders
    go("device/%s/%s" % (p1["user"], p1["device"]))
    kinds = [r.find_elements(By.CSS_SELECTOR, "td")[1].text
             for r in drv.find_elements(By.CSS_SELECTOR, "#content table")[0]
             .find_elements(By.CSS_SELECTOR, "tbody tr")] if drv.find_elements(
                 By.CSS_SELECTOR, "#content table") else []
    out("the device page shows its decisions over time", "decision" in kinds, kinds)
    shot("device")
    for page in ("versions", "throttle", "backends", "audit"):
        go(page)
        shot(page)
        # nothing to say on these pages: the content sits under the title
        # exactly where it would with no status line in the page at all
        gap = drv.execute_script("""
            const t = document.getElementById('title'), c = document.getElementById('content');
            const s = document.getElementById('status');
            const gap = () => c.getBoundingClientRect().top - t.getBoundingClientRect().bottom;
            const with_status = gap();
            s.remove();
            const without = gap();
            t.after(s);
            return [s.textContent, with_status, without];""")
        out("the %s page has no gap under its title when the status line is empty" % page,
            gap[0] == "" and abs(gap[1] - gap[2]) < 1, gap)
    go("throttle")
    out("the throttled page lists the phone over its budget",
        any(cfg["throttled"] in t for t in rows_text()), rows_text()[:3])
    go("versions")
    out("the OS versions page has its incubation calendar",
        len(drv.find_elements(By.CSS_SELECTOR, "#calendar .day")) == 35, "")
    go("audit")
    out("the audit page shows the approval by the helpdesk account",
        any("device approve " + p1["device"] in t and H[0] in t for t in rows_text()),
        rows_text()[:3])
    go("charts")
    time.sleep(0.5)
    n = drv.execute_script("return typeof Chart === 'undefined' ? -1 : "
                           "Object.keys(Chart.instances).length")
    out("the charts page draws three charts with chart.js", n == 3, n)
    shot("charts")
    collect_log()
    logout()

    # 7. a viewer sees no Approve button, and a forged POST gets 403
    login(*V)
    rows = drv.find_elements(By.CSS_SELECTOR, "#content tbody tr")
    buttons = drv.find_elements(By.CSS_SELECTOR, "#content button.approve, #q-approve-sel")
    out("a viewer sees the queue but no Approve button", len(rows) >= 1 and not buttons,
        "rows %d buttons %d" % (len(rows), len(buttons)))
    shot("viewer-quarantine")
    st, sess = fetch("GET", "/api/session")
    token = json.loads(sess)["csrf"]
    st, body = fetch("POST", "/api/run", "a=device&a=approve&a=" + target, token)
    out("a viewer's forged approve POST (with its own CSRF token) gets 403",
        st == 403 and "helpdesk" in body, "%d %s" % (st, body))
    collect_log()
    logout()

    # 8. an admin saves a rule from the console (audited as the admin)
    login(*A)
    go("rules")
    drv.find_element(By.ID, "rule-text").send_keys('block DeviceModel is "BlackBerry9900"')
    drv.find_element(By.ID, "rule-save").click()
    wait.until(lambda d: "added db" in d.find_element(By.ID, "status").text or
               d.find_elements(By.XPATH, "//td[contains(., 'BlackBerry9900')]"))
    out("an admin saves a rule from the rules page",
        bool(drv.find_elements(By.XPATH, "//td[contains(., 'BlackBerry9900')]")), "")

    # 9. the queue's filter and bulk action: the iOS 6.1 phones, selected at
    # once and blocked (an admin may do what a helpdesk does)
    go("quarantine")
    drv.find_element(By.ID, "q-os").send_keys("iOS 6.1*")
    # the page says how many it lists once the filtered table is drawn
    drv.execute_script("document.getElementById('status').textContent = ''")
    drv.find_element(By.ID, "q-filter").click()
    wait.until(lambda d: "in quarantine" in d.find_element(By.ID, "status").text)
    cells = [[c.text for c in r.find_elements(By.CSS_SELECTOR, "td")]
             for r in drv.find_elements(By.CSS_SELECTOR, "#content tbody tr")]
    out("the queue filtered by OS lists the iOS 6.1 phones alone, each with first seen and why",
        sorted(r.get_attribute("data-device") for r in drv.find_elements(
            By.CSS_SELECTOR, "#content tbody tr")) == sorted(cfg["ios61"]) and
        all(c[5] not in ("", "-") and c[6] for c in cells), cells)
    drv.find_element(By.ID, "q-all").click()
    drv.find_element(By.ID, "q-block-sel").click()
    wait.until(lambda d: "block: 2 devices" in d.find_element(By.ID, "status").text)
    out("selected together, the two are blocked with one click and leave the queue",
        not drv.find_elements(By.CSS_SELECTOR, "#content tbody tr[data-device]"),
        drv.find_element(By.ID, "status").text)
    collect_log()
    out("no Content-Security-Policy violation or script error in the browser console",
        not console_errors, console_errors[:3])
    print(json.dumps({"done": True}), flush=True)
except TimeoutException as e:
    shot("timeout")
    out("browser step finished in time", False, "timeout: %s; page: %s" % (e, drv.current_url))
    print(json.dumps({"done": True}), flush=True)
except Exception as e:  # noqa: BLE001
    shot("crash")
    print("CRASH %r" % e, flush=True)
    drv.quit()
    sys.exit(1)
drv.quit()
