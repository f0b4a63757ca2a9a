"""A real browser for the end-to-end tests: Debian's Chromium, headless, driven by its chromedriver.

What a person sees (the page's text, a screenshot) and what the page did on the network: every HTTP
response and every WebSocket, read from the DevTools protocol's network events (chromedriver's
performance log). Nothing is downloaded at run time: tools/setup.sh --browser installs the Debian
packages chromium and chromium-driver, requirements.txt pins Selenium.
"""
from __future__ import annotations

import collections
import contextlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

Response = collections.namedtuple("Response", "status method url request_id")
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless on a machine without a display or a network beyond loopback: no background connections
# (they would be refused, many at a time), no GPU, a new empty profile.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--window-size=1366,900", "--lang=en-US")


class Browser:
    """One Chromium with its own profile. `insecure_tls` accepts the proxy's self-signed certificate."""

    def __init__(self, artifacts: Path, insecure_tls=False):
        self.artifacts = artifacts
        self.profile = tempfile.mkdtemp(prefix="nocobase-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS + (("--ignore-certificate-errors",) if insecure_tls else ()):
            options.add_argument(flag)
        options.add_argument("--user-data-dir=" + self.profile)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        try:
            self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        except BaseException:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(120)
        self.events = []

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self, url):
        self.driver.get(url)

    @property
    def url(self):
        return self.driver.current_url

    def text(self):
        """The page's visible text."""
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except WebDriverException:
            return ""

    def find(self, css):
        """The displayed elements that match a CSS selector."""
        return [element for element in self.driver.find_elements(By.CSS_SELECTOR, css) if element.is_displayed()]

    def screenshot(self, name):
        """The page as a PNG in the artifacts directory; its path, or why there is none (a dead browser)."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
        try:
            self.driver.save_screenshot(str(path))
        except WebDriverException as exc:
            return "none (%s)" % exc.msg
        return path

    @contextlib.contextmanager
    def screenshot_on_failure(self, name):
        """Any failure inside keeps a screenshot of the page and names it in the failure."""
        try:
            yield
        except Exception as error:
            shot = self.screenshot("failed-" + name)
            try:
                url = self.url
            except WebDriverException:
                url = "?"
            raise AssertionError("%s: %s\n(at %s, screenshot %s)" % (type(error).__name__, error, url, shot)) from error

    def wait(self, predicate, timeout, what):
        """Poll predicate (bounded); on time-out keep a screenshot and the page's text, and fail."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if predicate():
                    return
            except WebDriverException:
                pass
            if time.monotonic() > deadline:
                shot = self.screenshot("timeout-" + what)
                raise AssertionError("%s: not within %d s at %s (screenshot %s); the page says:\n%s"
                                     % (what, timeout, self.url, shot, self.text()[:1500]))
            time.sleep(0.5)

    # The network, as the DevTools protocol reported it.

    def network(self):
        """Every network event so far (Network.* messages of the DevTools protocol)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"].startswith("Network."):
                self.events.append(message)
        return self.events

    def responses(self):
        """[Response] of every HTTP response the page received, in order."""
        methods = {}
        answered = []
        for event in self.network():
            params = event["params"]
            if event["method"] == "Network.requestWillBeSent":
                methods[params["requestId"]] = params["request"]["method"]
            elif event["method"] == "Network.responseReceived":
                response = params["response"]
                answered.append(Response(response["status"], methods.get(params["requestId"], "?"), response["url"],
                                         params["requestId"]))
        return answered

    def body(self, response):
        """The body the page received with a response (the DevTools protocol keeps it while the page lives)."""
        return self.driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": response.request_id})["body"]

    def failed_loads(self):
        """[(url or request id, error)] of requests that got no answer at all (refused, reset, blocked)."""
        events = self.network()
        urls = {event["params"]["requestId"]: event["params"]["request"]["url"]
                for event in events if event["method"] == "Network.requestWillBeSent"}
        return [(urls.get(event["params"]["requestId"], event["params"]["requestId"]), event["params"]["errorText"])
                for event in events if event["method"] == "Network.loadingFailed" and not event["params"].get("canceled")]

    def network_changed(self):
        """Whether Chromium dropped a request because the machine's network changed (Docker made or
        removed a network for another test running meanwhile): nothing the page or the proxy did."""
        try:
            return any(error == NETWORK_CHANGED for dummy, error in self.failed_loads())
        except WebDriverException:  # the browser is gone: nothing to tell
            return False

    def websockets(self):
        """{request id: {"url", "status" (the handshake's, 101 when it opened), "closed"}} of the page's WebSockets."""
        sockets = {}
        for event in self.network():
            params, method = event["params"], event["method"]
            if method == "Network.webSocketCreated":
                sockets[params["requestId"]] = {"url": params["url"], "status": None, "closed": False}
            elif method == "Network.webSocketHandshakeResponseReceived" and params["requestId"] in sockets:
                sockets[params["requestId"]]["status"] = params["response"]["status"]
            elif method == "Network.webSocketClosed" and params["requestId"] in sockets:
                sockets[params["requestId"]]["closed"] = True
        return sockets
