#!/usr/bin/env python3
"""Headless-browser test of the operator console (/api/console/).

Runs the system Chromium through Playwright against a running hrmig server:

    HRMIG_CONSOLE_URL=http://127.0.0.1:PORT HRMIG_ARTEFACTS=DIR python3 tests/browser/console.py MODE

MODE is what the server holds:

    loaded  a loaded reference set. HRMIG_EXPECT (JSON) gives the expected counts:
            {"departments": 12, "jobs": 183, "hired_employees": 1999,
             "rejections": {"missing": 3}, "latest_year": 2021}
            ("rejections" and "latest_year" optional; with "rejections", every other
            code must show no count). HRMIG_XSS_ID is the id of a department named
            <img src=x onerror=alert(1)>. HRMIG_RESTORE_TABLE (default: the first
            table with a backup) is the table whose restore is opened and cancelled.
    empty   an empty database: every view renders, zero counts, no banner.
    down    the database is down: the banner (role=alert) says so.
    key     the server needs the API key HRMIG_KEY: the key form takes it.

Other settings: HRMIG_CHROMIUM (default /usr/bin/chromium), HRMIG_WAIT_MS (default
10000, the longest wait for any one thing). Needs `pip install playwright==1.65.2`
and a Chromium (Debian: `apt-get install chromium`); never `playwright install`.
Exit 0 when every check passes; 1 with the failed check, expected and got; 2 on
a usage error.
"""

import json
import os
import re
import sys
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

WAIT_MS = int(os.environ.get("HRMIG_WAIT_MS", "10000"))
XSS = "<img src=x onerror=alert(1)>"
TABLES = ["departments", "jobs", "hired_employees"]
WIDE = {"width": 1366, "height": 768}
PHONE = {"width": 375, "height": 812}


class Failure(Exception):
    """A check that did not hold."""


class Run:
    """One page under test, with what it reported: console errors, page
    errors, JS dialogs and requests."""

    def __init__(self, browser, base, artefacts, allowed_statuses=()):
        self.base, self.artefacts = base, artefacts
        self.context = browser.new_context(viewport=WIDE, accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.problems, self.dialogs, self.requests = [], [], []
        self.checks = 0
        # A fetch answered 401 or 503 is logged by Chromium as a console error;
        # the modes that expect such answers allow exactly those.
        allowed = [re.compile(rf"status of {s}\b") for s in allowed_statuses]

        def on_console(msg):
            if msg.type == "error" and not any(a.search(msg.text) for a in allowed):
                self.problems.append(f"console error: {msg.text} ({msg.location.get('url', '')})")

        self.page.on("console", on_console)
        self.page.on("pageerror", lambda e: self.problems.append(f"uncaught page error: {e}"))
        self.page.on("dialog", self.on_dialog)
        self.page.on("request", lambda r: self.requests.append(f"{r.method} {r.url}"))

    def on_dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    # checks -------------------------------------------------------------

    def check(self, what, ok, expected, got):
        self.checks += 1
        if not ok:
            raise Failure(f"{what}: expected {expected}, got {got}")

    def wait(self, what, selector, state="visible"):
        try:
            return self.page.wait_for_selector(selector, state=state, timeout=WAIT_MS)
        except PlaywrightTimeout:
            raise Failure(f"{what}: waited {WAIT_MS} ms for {selector} ({state}); {self.state()}") from None

    def wait_for(self, what, js, arg=None):
        try:
            self.page.wait_for_function(js, arg=arg, timeout=WAIT_MS)
        except PlaywrightTimeout:
            raise Failure(f"{what}: waited {WAIT_MS} ms for {js}; {self.state()}") from None

    def state(self):
        """What the page shows now, for failure messages."""
        try:
            return self.page.evaluate(
                """() => {
                    const banner = document.getElementById('banner');
                    const shown = banner && !banner.hidden ? JSON.stringify(banner.textContent.trim()) : 'hidden';
                    return `hash ${location.hash}, data-ready ${document.body.dataset.ready}, banner ${shown}`;
                }"""
            )
        except PlaywrightError as e:
            return f"page state unknown ({e})"

    def ready(self, view, hash_part=""):
        """Waits until the view has rendered its data (body[data-ready]) at a hash."""
        self.wait_for(
            f"the {view} view renders",
            "([v, h]) => document.body.dataset.ready === v && location.hash.includes(h)",
            [view, hash_part],
        )

    def number(self, selector):
        text = self.page.locator(selector).inner_text().strip()
        digits = re.sub(r"[,\s\u202f]", "", text)
        return int(digits) if digits.isdigit() else text

    def banner_hidden(self, when):
        hidden = self.page.locator("[data-testid=banner]").is_hidden()
        text = "" if hidden else self.page.locator("[data-testid=banner]").inner_text()
        self.check(f"no banner {when}", hidden, "the banner hidden", repr(text))

    def no_injected_markup(self, when):
        count = self.page.locator('img[src="x"]').count()
        self.check(f'no <img src="x"> element {when}', count == 0, 0, count)
        self.check(f"no JS dialog fired {when}", not self.dialogs, "none", self.dialogs)

    def clean(self):
        self.check("no console or page errors", not self.problems, "none", list(dict.fromkeys(self.problems))[:5])
        self.check("no JS dialog fired", not self.dialogs, "none", self.dialogs)

    def open(self, hash_="#/overview"):
        self.page.goto(f"{self.base}/api/console/{hash_}")

    def screenshot(self, name):
        self.page.screenshot(path=str(self.artefacts / name), full_page=True)

    def go(self, link_text, view):
        """Follows a link of the navigation, as a person would."""
        self.page.get_by_role("navigation").get_by_role("link", name=link_text).click()
        self.ready(view)


# the modes ------------------------------------------------------------------


def loaded(run, expect):
    page = run.page
    run.open()
    run.ready("overview")
    for table in TABLES:
        if table in expect:
            got = run.number(f"[data-testid=count-{table}]")
            run.check(f"overview row count of {table}", got == expect[table], expect[table], got)
    if "rejections" in expect:
        shown = page.eval_on_selector_all(
            "[data-testid^=rejections-code-]",
            "els => Object.fromEntries(els.map(e => [e.dataset.testid.slice(16), e.textContent.replace(/[^0-9]/g, '')]))",
        )
        shown = {code: int(n) for code, n in shown.items()}
        wanted = {code: n for code, n in expect["rejections"].items() if n}
        run.check("overview rejections per code", shown == wanted, wanted, shown)
    chart = run.wait("the overview's quarterly chart is drawn", "[data-testid=chart-quarters][data-drawn=true]")
    year = chart.get_attribute("data-year")
    if "latest_year" in expect:
        run.check("the overview chart's year (latest with data)", year == str(expect["latest_year"]), expect["latest_year"], year)
    canvases = page.locator("[data-testid=chart-quarters] canvas").count()
    run.check("the quarterly chart has a canvas", canvases >= 1, ">= 1", canvases)
    run.banner_hidden("on the overview")
    run.screenshot("overview-1366.png")

    page.set_viewport_size(PHONE)
    run.wait_for("the page fits 375 px (no sideways scroll)", "() => document.documentElement.scrollWidth <= window.innerWidth")
    run.wait_for(
        "the chart shrinks to the phone's width",
        "() => [...document.querySelectorAll('[data-testid=chart-quarters] canvas')].every(c => c.getBoundingClientRect().right <= window.innerWidth)",
    )
    run.screenshot("overview-375.png")
    page.set_viewport_size(WIDE)

    # Reports: the year 2021, both charts, the CSV download.
    run.go("Reports", "reports")
    page.get_by_label("Year", exact=True).fill("2021")
    page.get_by_label("Year", exact=True).press("Enter")
    run.ready("reports", "year=2021")
    run.wait("the 2021 quarterly chart is drawn", "[data-testid=chart-quarters][data-year='2021'][data-drawn=true]")
    run.wait("the above-mean chart is drawn", "[data-testid=chart-above-mean][data-year='2021'][data-drawn=true]")
    rows = page.locator("[data-testid=quarter-row]").count()
    run.check("rows of the 2021 quarterly report table", rows > 0, "> 0", rows)
    with page.expect_download(timeout=WAIT_MS) as download:
        page.locator("[data-testid=csv-quarters]").click()
    header = Path(download.value.path()).read_text(encoding="utf-8").splitlines()[:1]
    run.check("the CSV download's header", header == ["department,job,q1,q2,q3,q4"], "department,job,q1,q2,q3,q4", header)
    run.no_injected_markup("on the reports")

    # The rejection log: a code filter narrows it to rows with that code.
    run.go("Rejections", "rejections")
    before = page.locator("[data-testid=rejection-row]").count()
    limit = int(page.locator("[data-testid=rejection-list]").get_attribute("data-limit") or 0) if before else 0
    codes = {code: n for code, n in expect.get("rejections", {}).items() if n}
    if not codes:
        shown = page.eval_on_selector_all("[data-testid^=rejections-code-]", "els => els.map(e => e.dataset.testid.slice(16))")
        codes = {code: None for code in shown[:1]}
    run.check("some rejection to filter on", bool(codes), "a code with rejections", "none shown")
    code, count = next(iter(codes.items()))
    page.get_by_test_id("filter-code").select_option(code)
    page.get_by_test_id("filter-apply").click()
    run.ready("rejections", f"code={code}")
    after = page.eval_on_selector_all("[data-testid=rejection-row]", "els => els.map(e => e.dataset.codes.split(' '))")
    run.check(f"rejection rows with code={code}", after and all(code in c for c in after), f"every row with {code}", after[:5])
    run.check("the filter does not widen the list", len(after) <= before, f"<= {before}", len(after))
    if count is not None:
        run.check(f"rows shown for code={code}", len(after) == min(count, limit), min(count, limit), len(after))
    page.locator("[data-testid=rejection-row] button").first.click()
    raw = page.locator("[data-testid=rejection-raw]").first
    run.check("a row's raw text shows", raw.is_visible(), "visible", "hidden")

    # Backups: restore asks in a <dialog>; Cancel and Escape restore nothing.
    run.go("Backups", "backups")
    table = os.environ.get("HRMIG_RESTORE_TABLE")
    if not table:
        enabled = [t for t in TABLES if page.get_by_test_id(f"restore-{t}").is_enabled()]
        run.check("a table with a backup to restore", bool(enabled), "one restore button enabled", "all disabled")
        table = enabled[0]
    button = page.get_by_test_id(f"restore-{table}")
    dialog = page.get_by_test_id("confirm-dialog")
    for close in ("Cancel", "Escape"):
        button.click()
        run.wait(f"the restore confirmation ({close})", "[data-testid=confirm-dialog][open]")
        tag = dialog.evaluate("d => d.tagName")
        run.check("the confirmation is a <dialog>", tag == "DIALOG", "DIALOG", tag)
        text = dialog.inner_text()
        run.check("the dialog names the table", table in text, table, text)
        run.check("focus is in the dialog", page.evaluate("() => document.activeElement?.closest('dialog') !== null"), True, False)
        if close == "Cancel":
            page.get_by_test_id("confirm-cancel").click()
        else:
            page.keyboard.press("Escape")
        run.wait(f"the dialog closes on {close}", "[data-testid=confirm-dialog]", state="hidden")
        focused = page.evaluate("() => document.activeElement?.dataset.testid")
        run.check(f"focus returns to the restore button after {close}", focused == f"restore-{table}", f"restore-{table}", focused)
    restores = [r for r in run.requests if r.endswith("/restore")]
    run.check("no restore request sent", not restores, "none", restores)

    # The department with markup in its name shows as text.
    xss_id = os.environ.get("HRMIG_XSS_ID")
    if xss_id:
        run.open(f"#/tables?table=departments&after_id={int(xss_id) - 1}")
        run.ready("tables", "table=departments")
        cell = page.locator(f"[data-testid=table-row][data-id='{xss_id}'] td").nth(1)
        got = cell.inner_text() if cell.count() else "no such row"
        run.check(f"department {xss_id} shown as text", got == XSS, XSS, got)
        # The load job that loaded the set, listed with its status.
        jobs = page.locator("[data-testid=job-row][data-status=done]").count()
        run.check("the finished load job listed", jobs >= 1, ">= 1 done job row", jobs)
    run.no_injected_markup("at the end")
    run.clean()


def empty(run, expect):
    run.open()
    run.ready("overview")
    for table in TABLES:
        got = run.number(f"[data-testid=count-{table}]")
        want = expect.get(table, 0)
        run.check(f"overview row count of {table}", got == want, want, got)
    codes = run.page.locator("[data-testid^=rejections-code-]").count()
    run.check("no rejection counts", codes == 0, 0, codes)
    run.wait("the quarterly chart says it has no data", "[data-testid=chart-quarters][data-empty=true]")
    run.banner_hidden("on the empty overview")
    run.screenshot("empty-1366.png")
    for link, view in (("Tables & loads", "tables"), ("Rejections", "rejections"), ("Reports", "reports"), ("Backups", "backups")):
        run.go(link, view)
        run.banner_hidden(f"on the empty {view} view")
        if view == "reports":
            run.wait("the empty quarterly report says so", "[data-testid=chart-quarters][data-empty=true]")
            run.wait("the empty above-mean report says so", "[data-testid=chart-above-mean][data-empty=true]")
    run.clean()


def down(run, expect):
    run.open()
    banner = run.wait("the banner shows", "[data-testid=banner]")
    role = banner.get_attribute("role")
    run.check("the banner's role", role == "alert", "alert", role)
    text = banner.inner_text()
    run.check("the banner says the database is unavailable", "database is unavailable" in text.lower(), "'The database is unavailable: …'", text)
    nav = run.page.get_by_role("navigation").is_visible()
    run.check("the page is not blank (navigation shown)", nav, "navigation visible", "hidden")
    run.screenshot("down-1366.png")
    run.clean()


def key(run, expect):
    api_key = os.environ.get("HRMIG_KEY")
    if not api_key:
        raise Failure("key mode: HRMIG_KEY is not set")
    page = run.page
    run.open()
    run.wait("the key form shows", "[data-testid=key-form]")
    field = page.get_by_label("API key", exact=True)
    run.check("the key input is a password field", field.get_attribute("type") == "password", "password", field.get_attribute("type"))
    field.fill(api_key + "-wrong")
    page.get_by_role("button", name="Use this key").click()
    run.wait_for("a wrong key is refused", "() => /refused/.test(document.getElementById('key-why').textContent)")
    page.get_by_label("API key", exact=True).fill(api_key)
    page.get_by_role("button", name="Use this key").click()
    run.ready("overview")
    run.banner_hidden("once the key is given")
    form = page.locator("[data-testid=key-form]").is_hidden()
    run.check("the key form is gone", form, "hidden", "visible")
    stored = page.evaluate("() => [sessionStorage.getItem('hrmig.apiKey'), localStorage.length]")
    run.check("the key is in sessionStorage only", stored == [api_key, 0], [api_key, 0], stored)
    page.reload()
    run.ready("overview")
    shown = page.locator("[data-testid=key-form]").is_visible()
    run.check("after a reload the stored key serves", not shown, "no key form", "the key form")
    run.screenshot("key-1366.png")
    run.clean()


MODES = {"loaded": (loaded, ()), "empty": (empty, ()), "down": (down, (503,)), "key": (key, (401,))}


def main(argv):
    if len(argv) != 2 or argv[1] not in MODES or not os.environ.get("HRMIG_CONSOLE_URL"):
        print(f"usage: HRMIG_CONSOLE_URL=http://HOST:PORT [HRMIG_ARTEFACTS=DIR] {argv[0]} {'|'.join(MODES)}", file=sys.stderr)
        return 2
    mode = argv[1]
    test, allowed = MODES[mode]
    base = os.environ["HRMIG_CONSOLE_URL"].rstrip("/")
    artefacts = Path(os.environ.get("HRMIG_ARTEFACTS", "."))
    artefacts.mkdir(parents=True, exist_ok=True)
    try:
        expect = json.loads(os.environ.get("HRMIG_EXPECT") or "{}")
    except json.JSONDecodeError as e:
        print(f"console.py {mode}: HRMIG_EXPECT is not JSON: {e}", file=sys.stderr)
        return 2
    chromium = os.environ.get("HRMIG_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        run = Run(browser, base, artefacts, allowed)
        try:
            test(run, expect)
        except (Failure, PlaywrightError) as e:
            try:
                run.screenshot(f"failure-{mode}.png")
            except PlaywrightError:
                pass
            print(f"console.py {mode}: FAILED after {run.checks} checks: {e}", file=sys.stderr)
            problems = list(dict.fromkeys(run.problems))  # each once, in order
            for problem in problems[:5]:
                print(f"  also: {problem}", file=sys.stderr)
            if len(problems) > 5:
                print(f"  also: {len(problems) - 5} more distinct problems", file=sys.stderr)
            return 1
        finally:
            browser.close()
    print(f"console.py {mode}: ok, {run.checks} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
