#!/usr/bin/env python3
"""Real-browser test of the sdq console (/console/), headless Chromium through Selenium.

Environment: SDQ_URL (the API, e.g. http://127.0.0.1:8090), SDQ_KEY (a tenant key), SDQ_OPERATOR_KEY
(an operator key), SDQ_SCREENSHOTS (folder for one PNG per view; default .build/console-screenshots),
CHROME_BIN and CHROMEDRIVER (default /usr/bin/chromium, /usr/bin/chromedriver).
Run through scripts/console-browser-test.sh, which starts `sdq up` for it. Exits non-zero on failure.
"""
import json
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ.get("SDQ_URL", "http://127.0.0.1:8090").rstrip("/")
KEY = os.environ.get("SDQ_KEY", "k-alice")
OPERATOR_KEY = os.environ.get("SDQ_OPERATOR_KEY", "k-ops")
ROOT = pathlib.Path(__file__).resolve().parents[2]
SHOTS = pathlib.Path(os.environ.get("SDQ_SCREENSHOTS", ROOT / ".build/console-screenshots"))
TIMEOUT = 60

log_entries = []
# Failed requests the test provokes on purpose show up as SEVERE network entries; only these are allowed.
expected_network_errors = []


def step(message):
    print(f"[console-test] {message}", flush=True)


def api(path, key=KEY, method="GET"):
    request = urllib.request.Request(BASE + path, method=method, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def make_driver():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROME_BIN", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


class Console:
    def __init__(self, driver):
        self.d = driver

    def wait(self, condition, message, timeout=TIMEOUT):
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(lambda d: condition(d), message)
        except TimeoutException as error:
            self.shot("failure")
            raise AssertionError(f"timed out: {message}") from error

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def visible(self, css, message=None):
        def found(d):
            elements = d.find_elements(By.CSS_SELECTOR, css)
            return elements[0] if elements and elements[0].is_displayed() else False
        return self.wait(found, message or f"{css} visible")

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def shot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.d.save_screenshot(str(SHOTS / f"{name}.png"))

    def collect_logs(self):
        log_entries.extend(self.d.get_log("browser"))

    def tab(self, view):
        self.el(f"#tab-{view}").click()
        self.wait(lambda d: self.el(f"#tab-{view}").get_attribute("aria-selected") == "true", f"tab {view} selected")
        self.wait(lambda d: self.el(f"#view-{view}").is_displayed(), f"view {view} shown")

    def sign_in(self, key):
        field = self.visible("#key-input", "the key form")
        field.clear()
        field.send_keys(key, Keys.ENTER)  # keyboard only
        self.visible("#app", "the console after the key")

    def set_field(self, name, value):
        field = self.el(f"#f-{name}")
        field.clear()
        if value != "":
            field.send_keys(str(value))

    def live_status(self):
        return self.js("const b = document.querySelector('#live-status .badge'); return b ? b.textContent : null;")

    def live_task_id(self):
        return self.wait(lambda d: self.js("const a = document.querySelector('#live-facts dd a'); return a ? a.textContent : null;"), "the submitted task's id")

    def image_loaded(self, css):
        return self.js(
            "const i = document.querySelector(arguments[0]); return !!(i && i.complete && i.naturalWidth > 0);", css
        )


def run(c):
    d = c.d
    step(f"opening {BASE}/console/")
    d.get(f"{BASE}/console/")
    c.visible("#key-input", "the key form")
    c.shot("01-key")
    c.sign_in(KEY)
    assert c.js("return sessionStorage.getItem('sdq.apiKey')") == KEY, "the key is kept in sessionStorage"
    d.refresh()
    c.visible("#app", "the console after a reload, without asking the key again")
    assert not c.el("#key-panel").is_displayed(), "the key is not asked again after a reload"

    # The form's target list comes from /v1/pools.
    c.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#f-target option")) > 1, "pools and models in the form")

    step("validation error next to its field")
    c.set_field("prompt", "a lighthouse at dusk")
    c.set_field("steps", 9999)
    expected_network_errors.append("/v1/tasks ")
    c.el("#submit-button").click()
    c.wait(lambda d: c.el("#err-steps").text.strip() != "", "the API's error next to the steps field")
    assert c.el("#f-steps").get_attribute("aria-invalid") == "true"
    assert "steps" in c.el("#submit-error").text, "the form-level error names the field"
    step(f"  shown: {c.el('#err-steps').text!r}")

    step("submitting with the keyboard only (Tab to Submit, Enter)")
    c.set_field("steps", 40)
    c.set_field("seed", "")
    c.el("#f-prompt").click()
    for _ in range(40):
        if c.js("return document.activeElement.id") == "submit-button":
            break
        d.switch_to.active_element.send_keys(Keys.TAB)
    assert c.js("return document.activeElement.id") == "submit-button", "Tab reaches the Submit button"
    d.switch_to.active_element.send_keys(Keys.ENTER)
    c.visible("#live", "the live progress panel")
    assert c.el("#err-steps").text.strip() == "", "the old error is cleared"
    task_id = c.live_task_id()
    step(f"  task {task_id}")

    values, previews = set(), set()

    def progressed(d):
        value = float(c.el("#live-progress").get_attribute("value") or 0)
        if 0 < value < 1:
            values.add(round(value, 4))
        src = c.js("const p = document.getElementById('live-preview'); return p.hidden ? null : document.getElementById('live-preview-img').src;")
        if src:
            previews.add(src)
            if c.image_loaded("#live-preview-img"):
                c.shot("02-submit-progress")
        return c.live_status() in ("succeeded", "failed", "cancelled")

    c.wait(progressed, "the task to end")
    assert c.live_status() == "succeeded", f"the task ended {c.live_status()}"
    step(f"  progress values seen: {sorted(values)}; previews: {len(previews)}")
    assert len(values) >= 2 or previews, "the progress bar moved (two values) or a preview showed"
    c.wait(lambda d: c.image_loaded("#live-images img"), "the final image loads")
    assert float(c.el("#live-progress").get_attribute("value")) == 1.0
    c.shot("03-submit-done")

    step("gallery")
    c.tab("gallery")
    thumb = f'.task-card[data-task-id="{task_id}"] img.thumb'
    c.wait(lambda d: d.find_elements(By.CSS_SELECTOR, thumb), "the task in the gallery")
    c.js("document.querySelector(arguments[0]).scrollIntoView()", thumb)
    c.wait(lambda d: c.image_loaded(thumb), "the thumbnail loads (naturalWidth > 0)")
    card = c.el(f'.task-card[data-task-id="{task_id}"]')
    assert "a lighthouse at dusk" in card.text, "the card shows the prompt"
    assert card.find_elements(By.CSS_SELECTOR, 'a[data-action="download"]'), "a download link"
    assert card.find_elements(By.CSS_SELECTOR, 'button[data-action="rerun"]'), "a re-run button"
    c.js("window.scrollTo(0, 0)")
    c.shot("04-gallery")

    step("re-run with the same seed fills the form")
    seed = api(f"/v1/tasks/{task_id}")["images"][0]["seed"]
    card.find_element(By.CSS_SELECTOR, 'button[data-action="rerun"]').click()
    c.wait(lambda d: d.current_url.endswith("#submit"), "the submit view after re-run")
    assert c.el("#f-seed").get_attribute("value") == str(seed), "the seed is the image's"
    assert c.el("#f-prompt").get_attribute("value") == "a lighthouse at dusk"
    assert c.el("#f-steps").get_attribute("value") == "40"

    step("task detail")
    d.get(f"{BASE}/console/#task/{task_id}")
    c.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".wf-row")) >= 3, "the waterfall rows")
    names = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".wf-row .wf-name")]
    step(f"  waterfall: {names}")
    assert "Queue" in names and "Runtime" in names, names
    trace_id = api(f"/v1/tasks/{task_id}").get("trace_id")
    assert trace_id and c.el("#task-trace").text == trace_id, "the detail shows the task's trace id"
    step(f"  trace id: {trace_id}")
    assert c.el("#tab-task").get_attribute("aria-selected") == "true"
    c.wait(lambda d: c.image_loaded("#task-body .images img"), "the task's image in the detail")
    c.shot("05-task-detail")

    step("cancelling a running task from the UI")
    c.tab("submit")
    c.set_field("prompt", "a long task to cancel")
    c.set_field("steps", 80)
    c.set_field("seed", "")
    c.el("#submit-button").click()
    c.wait(lambda d: c.live_task_id() != task_id, "a new task")
    cancel_id = c.live_task_id()
    c.wait(lambda d: c.live_status() == "running" and float(c.el("#live-progress").get_attribute("value") or 0) > 0, "the task to run")
    c.el("#live-cancel").click()
    c.wait(lambda d: c.live_status() == "cancelled", "the task to show cancelled")
    doc = api(f"/v1/tasks/{cancel_id}")
    assert doc["status"] == "cancelled", f"GET /v1/tasks/{cancel_id} says {doc['status']}"
    c.shot("06-cancelled")

    step("fleet")
    c.tab("fleet")
    c.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".pool-row"), "pool rows")
    pools = api("/v1/pools")["pools"]
    shown = {row.get_attribute("data-pool"): row.get_attribute("data-health") for row in d.find_elements(By.CSS_SELECTOR, ".pool-row")}
    wanted = {p["name"]: (p.get("health") or {}).get("status", "unknown") for p in pools}
    step(f"  pools shown {shown}, API {wanted}")
    assert shown == wanted, f"fleet shows {shown}, the API {wanted}"
    c.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".worker-row"), "worker rows")
    c.shot("07-fleet")

    step("dark colour scheme follows the platform setting")
    light = c.js("return getComputedStyle(document.body).backgroundColor")
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    c.wait(lambda d: c.js("return getComputedStyle(document.body).backgroundColor") != light, "the dark palette")
    c.shot("07-fleet-dark")
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})

    step("keyboard: arrow keys between tabs")
    c.el("#tab-fleet").send_keys(Keys.ARROW_RIGHT)
    expected_network_errors.append("/v1/dead-letters ")
    c.wait(lambda d: d.current_url.endswith("#dead-letters") and c.js("return document.activeElement.id") == "tab-dead-letters", "ArrowRight moves to Dead letters")
    c.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#dead-letters-notice, .dlq"), "the dead letters view answers")
    tenant_view = c.el("#dead-letters-body").text
    step(f"  tenant key: {tenant_view.splitlines()[0] if tenant_view else ''!r}")
    assert not d.find_elements(By.CSS_SELECTOR, 'button[data-action="redrive"]:not([disabled])'), "no re-drive for a tenant key"

    step("dead letters with the operator key")
    c.el("#change-key").click()
    c.sign_in(OPERATOR_KEY)
    c.wait(lambda d: d.current_url.endswith("#dead-letters") and c.el("#view-dead-letters").is_displayed(), "the dead letters view")
    c.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#dead-letters-notice, .dlq"), "dead letter queues or the notice")
    text = c.el("#dead-letters-body").text
    step(f"  operator: {text.splitlines()[0] if text else ''!r}")
    try:
        api("/v1/dead-letters", key=OPERATOR_KEY)
        assert d.find_elements(By.CSS_SELECTOR, ".dlq") or "no dead-letter queues" in text, "the queues are shown"
    except urllib.error.HTTPError as error:
        assert error.code == 404, f"GET /v1/dead-letters answered {error.code}"
        assert "not available" in text, "the clear not-available message"
    c.shot("08-dead-letters")

    step("sign out")
    c.el("#sign-out").click()
    c.visible("#key-input", "the key form after signing out")
    assert c.js("return sessionStorage.getItem('sdq.apiKey')") is None

    c.collect_logs()


def check_logs():
    severe = [e for e in log_entries if e.get("level") == "SEVERE"]
    unexpected = []
    for entry in severe:
        message = entry.get("message", "")
        if entry.get("source") == "network" and any(fragment in message for fragment in expected_network_errors):
            print(f"[console-test]   provoked on purpose: {message}")
        else:
            unexpected.append(entry)
    warnings = [e for e in log_entries if e.get("level") == "WARNING"]
    for entry in warnings:
        print(f"[console-test]   warning: {entry}")
    assert not unexpected, f"SEVERE browser log entries: {unexpected}"
    assert not warnings, f"browser warnings: {warnings}"


def main():
    driver = make_driver()
    console = Console(driver)
    try:
        run(console)
        check_logs()
    except Exception:
        try:
            console.collect_logs()
            for entry in log_entries:
                print(f"[console-test] browser log: {entry}", file=sys.stderr)
        except Exception:
            pass
        raise
    finally:
        driver.quit()
    step(f"passed; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
