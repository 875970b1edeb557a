"""The live page in headless Chromium, checked against the database (see scripts/browser-tests)."""
import argparse
import json
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

parser = argparse.ArgumentParser()
parser.add_argument("--url", required=True)
parser.add_argument("--token", required=True)
parser.add_argument("--database", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
checks = 0


def sql(query):
    """Rows of a query, each a list of text fields."""
    out = subprocess.run(["psql", args.database, "-XAt", "-F", "\t", "-c", query],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def check(condition, message):
    global checks
    if not condition:
        driver.save_screenshot(f"{args.out}/failure.png")
        print(f"browser-tests: FAILED: {message} (screenshot: {args.out}/failure.png)")
        sys.exit(1)
    checks += 1


def steady(read):
    """`read()` again when the page's 5-second refresh replaced the elements it was reading."""
    for _ in range(10):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.2)
    return read()


def eventually(probe, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    check(False, f"timed out waiting for {what}")


options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1250",
             "--force-device-scale-factor=1", "--lang=en-GB"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
# A click that submits a form loads a new page: an element found just before may be gone.
wait = WebDriverWait(driver, 30, ignored_exceptions=[NoSuchElementException, StaleElementReferenceException])
try:
    # Not logged in: the login form, and no data.
    driver.get(args.url + "/dashboard")
    check(driver.find_elements(By.ID, "token"), "the page without a login should show the login form")
    check("Log out" not in driver.page_source, "the login form should not show the page")
    driver.save_screenshot(f"{args.out}/login.png")

    # A wrong token: refused, still the form.
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    driver.find_element(By.ID, "login").click()
    wait.until(EC.presence_of_element_located((By.ID, "login-error")))
    check(not driver.get_cookies(), "a wrong token must not set a cookie")

    # The right token: the page, with a Secure, HttpOnly, SameSite=Strict session cookie.
    driver.find_element(By.ID, "token").send_keys(args.token)
    driver.find_element(By.ID, "login").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")
    cookies = {c["name"]: c for c in driver.get_cookies()}
    session = cookies.get("upsert_admin")
    check(session is not None, "logging in should set the upsert_admin cookie")
    check(session["httpOnly"] and session["secure"] and session.get("sameSite") == "Strict",
          f"the session cookie should be HttpOnly, Secure and SameSite=Strict: {session}")
    check(args.token not in session["value"], "the cookie must not hold the token itself")
    check(driver.execute_script("return document.cookie") == "", "scripts must not read the session cookie")

    def page_counts():
        return steady(read_counts)

    def read_counts():
        counts = {}
        for tr in driver.find_elements(By.CSS_SELECTOR, "#queues tbody tr"):
            cells = [td.text.replace(",", "") for td in tr.find_elements(By.TAG_NAME, "td")]
            counts[cells[0]] = [int(c) for c in cells[1:6]]
        return counts

    def db_counts():
        counts = {}
        for queue, state, jobs in sql("SELECT queue, state, count(*) FROM queue.jobs GROUP BY 1, 2"):
            counts.setdefault(queue, [0] * 5)[["ready", "running", "succeeded", "failed", "cancelled"].index(state)] = int(jobs)
        return counts

    # The numbers the database holds: counts by queue and state, errors by code, failed jobs.
    expected = db_counts()
    check(expected.get("contacts", [0] * 5)[3] > 0 and expected["contacts"][2] > 0,
          f"the setup should leave succeeded and failed jobs: {expected}")
    check(page_counts() == expected, f"queue counts: page {page_counts()} vs database {expected}")
    codes = {code: int(n) for code, n in sql(
        "SELECT last_error->>'code', count(*) FROM queue.jobs WHERE state = 'failed' GROUP BY 1")}
    def read_codes():
        shown = {}
        for tr in driver.find_elements(By.CSS_SELECTOR, "#errors tbody tr"):
            cells = tr.find_elements(By.TAG_NAME, "td")
            shown[cells[0].text] = int(cells[1].text.replace(",", ""))
        return shown
    shown = steady(read_codes)
    check(shown == codes, f"errors by code: page {shown} vs database {codes}")
    failed_ids = [int(r[0]) for r in sql(
        "SELECT id FROM queue.jobs WHERE state = 'failed' ORDER BY created_at DESC, id DESC LIMIT 20")]
    page_failed = steady(lambda: [int(tr.get_attribute("data-job"))
                                  for tr in driver.find_elements(By.CSS_SELECTOR, "#failed tbody tr")])
    check(page_failed == failed_ids, f"latest failed jobs: page {page_failed} vs database {failed_ids}")
    waiting_ids = [int(r[0]) for r in sql(
        "SELECT id FROM queue.jobs WHERE state = 'ready' AND run_at <= now() ORDER BY run_at, id LIMIT 20")]
    page_waiting = steady(lambda: [int(tr.get_attribute("data-job"))
                                   for tr in driver.find_elements(By.CSS_SELECTOR, "#waiting tbody tr")])
    check(page_waiting == waiting_ids, f"waiting jobs: page {page_waiting} vs database {waiting_ids}")
    # The stored error object of a failed job, as stored.
    steady(lambda: driver.find_element(
        By.CSS_SELECTOR, f'#failed tbody tr[data-job="{failed_ids[0]}"] summary').click())
    shown_error = json.loads(steady(lambda: driver.find_element(
        By.CSS_SELECTOR, f'#failed tbody tr[data-job="{failed_ids[0]}"] pre').text))
    stored_error = json.loads(sql(f"SELECT last_error FROM queue.jobs WHERE id = {failed_ids[0]}")[0][0])
    check(shown_error == stored_error, f"job {failed_ids[0]}'s error object: page {shown_error} vs database {stored_error}")

    # The chart: the jobs the worker finished show as bars once their 20-second bar is complete.
    eventually(lambda: driver.find_elements(By.CSS_SELECTOR, "#throughput rect.bar"), "a throughput bar", timeout=45)
    eventually(lambda: driver.find_elements(By.CSS_SELECTOR, "#latency path.due"), "a latency line", timeout=15)
    # An error object opened before the refreshes is still open after them.
    time.sleep(5.5)
    check(driver.find_elements(By.CSS_SELECTOR, f'#failed tbody tr[data-job="{failed_ids[0]}"] details[open]'),
          "an opened error object should stay open across refreshes")
    finished = int(sql("SELECT count(*) FROM queue.jobs WHERE state IN ('succeeded', 'failed')")[0][0])
    note = steady(lambda: driver.find_element(By.ID, "throughput-note").text)
    check(note.startswith(f"{finished:,} jobs finished"), f"throughput note '{note}', expected {finished:,} jobs")
    driver.save_screenshot(f"{args.out}/dashboard.png")

    # A forged action without the CSRF token, from the page's own origin: refused, nothing changes.
    status = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/dashboard/jobs/%d/retry', {method: 'POST', credentials: 'same-origin'}).then(r => done(r.status));
    """ % failed_ids[0])
    check(status == 403, f"a POST without the CSRF token answered {status}, expected 403")
    check(sql(f"SELECT state FROM queue.jobs WHERE id = {failed_ids[0]}")[0][0] == "failed",
          "a refused action must not change the job")

    # Retry through the button: the job is ready again, with fresh attempts.
    steady(lambda: driver.find_element(By.CSS_SELECTOR, f'button[data-job="{failed_ids[0]}"][data-action="retry"]').click())
    eventually(lambda: sql(f"SELECT state, attempts FROM queue.jobs WHERE id = {failed_ids[0]}")[0] == ["ready", "0"],
               f"job {failed_ids[0]} to be ready after Retry")
    toast = wait.until(EC.presence_of_element_located((By.ID, "toast"))).text
    check(f"Job {failed_ids[0]} is ready now" in toast, f"the toast after Retry said '{toast}'")

    # Cancel through the button: the longest-waiting job is cancelled.
    victim = waiting_ids[0]
    steady(lambda: wait.until(
        EC.element_to_be_clickable((By.CSS_SELECTOR, f'button[data-job="{victim}"][data-action="cancel"]'))).click())
    eventually(lambda: sql(f"SELECT state FROM queue.jobs WHERE id = {victim}")[0][0] == "cancelled",
               f"job {victim} to be cancelled after Cancel")

    # The page follows: after the next refresh its counts are the database's again.
    eventually(lambda: page_counts() == db_counts(), "the page's counts to follow the database", timeout=15)

    # Logging out ends the page.
    driver.find_element(By.CSS_SELECTOR, "header form button").click()
    wait.until(EC.presence_of_element_located((By.ID, "token")))
    check(not driver.get_cookies(), "logging out should clear the session cookie")
    print(f"browser-tests: {checks} checks passed in Chromium "
          f"({driver.capabilities.get('browserVersion', '?')}); screenshots in {args.out}")
finally:
    driver.quit()
