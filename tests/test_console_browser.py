"""The web console in a real headless browser (Debian's chromium + chromium-driver, Selenium).

The loop runs ``operate --apply`` against the Modbus twin on 127.0.0.1 with its API (as
tests/test_api.py); the browser loads the console from that process, which must show the
loop running, the plan and every point commanded by Coolshift, load nothing from
anywhere else, and hand every point back on the twin when the release button is clicked
with the token entered. ``make test`` installs chromium and chromium-driver as root; the
test skips (saying so) only when they are missing and this is not root.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from coolshift.bms.audit import read_audit
from test_api import STEP_S, run_live, wait_for
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)
from test_operate import TwinThread, _twin, site_data  # noqa: F401 (site_data: the module fixture)

pytestmark = pytest.mark.timeout(180)

TOKEN = "console-token-41d2"
ROWS_JS = ("return Array.from(document.querySelectorAll('#points tbody tr')).map(tr => [tr.dataset.point, "
           "tr.querySelector('td.control').textContent, tr.querySelector('td.planned').textContent]);")
SERIES_JS = "return Array.from(document.querySelectorAll('#' + arguments[0] + ' polyline')).map(e => e.dataset.series);"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)


@pytest.fixture
def browser_paths():
    if CHROMIUM and DRIVER:
        return CHROMIUM, DRIVER
    msg = ("Debian's chromium and chromium-driver are not installed (`make test` installs them as root: "
           "apt-get install chromium chromium-driver)")
    if os.geteuid() != 0:
        pytest.skip(msg + "; not root, so the console's browser test cannot run here")
    pytest.fail(msg)


def _driver(chromium: str, driver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--disable-sync", "--metrics-recording-only",
                # no name resolves outside loopback: a page that fetched from a CDN would fail to load it
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    # the driver's path given: Selenium Manager (which would download a driver) is never used
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def test_console_shows_the_plan_and_points_and_its_release_button_hands_back(tmp_path, site_data, small_site_model,
                                                                              browser_paths, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("COOLSHIFT_API_TOKEN", TOKEN)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium: never reach out for drivers or statistics
    site, data = site_data
    twin, pm = _twin(tmp_path, site, data)
    names = sorted(p.name for p in pm.writable)
    seen = {}

    def during(base):
        drv = _driver(*browser_paths)
        try:
            wait_for(lambda: all(twin.server.held_by_supervisor().values()), "every point commanded", 30)
            drv.get(base + "/")
            wait = WebDriverWait(drv, 15, poll_frequency=0.1)

            # the console redraws its tables and charts every poll: read them in one script, never stale
            def rows():
                return {p: (c, pl) for p, c, pl in drv.execute_script(ROWS_JS)}

            def controls():
                return {p: c for p, (c, _) in rows().items()}

            def series(chart):
                return sorted(drv.execute_script(SERIES_JS, chart))

            wait.until(lambda d: d.find_element(By.ID, "state").text == "running"
                       and d.find_element(By.ID, "steps").text.isdigit() and int(d.find_element(By.ID, "steps").text) >= 3
                       and sorted(controls()) == names and set(controls().values()) == {"commanded by Coolshift"})
            seen["controls"] = controls()
            seen["plan_status"] = drv.find_element(By.ID, "plan-status").text
            seen["planned"] = {p: pl for p, (_, pl) in rows().items()}
            # plan against actual: a planned (dashed) and a measured line per setpoint, drawn from the history
            wait.until(lambda d: len(series("chart-setpoints")) >= 2)
            seen["lines"] = series("chart-setpoints")
            seen["power_lines"] = series("chart-power")
            seen["kgco2"] = drv.find_element(By.ID, "kgco2-so-far").text
            seen["audit_chain"] = drv.find_element(By.ID, "audit-chain").text
            seen["resources"] = drv.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);")
            if os.environ.get("COOLSHIFT_CONSOLE_SCREENSHOT"):  # a picture of the console for the docs
                drv.save_screenshot(os.environ["COOLSHIFT_CONSOLE_SCREENSHOT"])
            # release: token and name entered, the button clicked, the confirmation accepted
            drv.find_element(By.ID, "operator").send_keys("carol")
            drv.find_element(By.ID, "token").send_keys(TOKEN)
            t0 = time.monotonic()
            drv.find_element(By.ID, "release").click()
            wait.until(EC.alert_is_present()).accept()
            wait_for(lambda: not any(twin.server.held_by_supervisor().values()), "every point handed back", 10)
            seen["release_to_local_s"] = time.monotonic() - t0
            wait.until(lambda d: "release requested by carol from 127.0.0.1" in d.find_element(By.ID, "action-result").text)
            wait.until(lambda d: d.find_element(By.ID, "state").text == "paused"
                       and set(controls().values()) == {"local control"})
            seen["paused_by"] = drv.find_element(By.ID, "paused-by").text
            time.sleep(2 * STEP_S)  # released: nothing is written again
            seen["held_later"] = twin.server.held_by_supervisor()
        finally:
            drv.quit()

    with TwinThread(twin):
        res, view, _, _ = run_live(pm, site, data, small_site_model[1], during)
    assert res.exit_code == 0, res.reason
    assert seen["controls"] == {n: "commanded by Coolshift" for n in names}
    assert seen["plan_status"] not in ("", "-")
    assert all(float(v) > 0 for v in seen["planned"].values()), seen["planned"]
    setpoints = sorted(k for k in view.history[-1]["targets"] if k in view.history[-1]["measured"])
    assert seen["lines"] == sorted([f"{k} planned" for k in setpoints] + [f"{k} measured" for k in setpoints])
    assert "cooling power measured" in seen["power_lines"] and "facility power measured" in seen["power_lines"]
    assert seen["kgco2"].endswith(" kgCO2") and float(seen["kgco2"].split()[0]) > 0
    assert seen["audit_chain"].startswith("(hash chain verified")
    base = seen["resources"][-1].rsplit("/", 1)[0]
    assert base.startswith("http://127.0.0.1:") and all(u.startswith(base + "/") for u in seen["resources"]), \
        seen["resources"]
    assert seen["paused_by"] == "paused by carol from 127.0.0.1"
    assert not any(seen["held_later"].values()), seen["held_later"]
    log = read_audit(pm.resolve(pm.audit_db))
    ops = log.loc[log.action == "operator", ["result", "detail"]].values.tolist()
    assert ops == [["ok", "release requested by carol from 127.0.0.1"]], ops
    assert not log.detail.fillna("").str.contains(TOKEN).any()
    print({"release_to_local_s": round(seen["release_to_local_s"], 3)})
