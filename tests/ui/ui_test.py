#!/usr/bin/env python3
"""The dashboard (/ui) in a real browser: Debian's headless Chromium,
driven through the DevTools protocol over a pipe (--remote-debugging-pipe:
NUL-separated JSON on file descriptors 3 and 4), with Python's standard
library only.

Run by scripts/ui-test.sh, which starts the 3-node cluster and sets:
  UI_NODES       comma-separated public URLs of n1..n3
  UI_ARTIFACTS   directory for the screenshots
  UI_KILL        command that SIGKILLs n3 (scripts/cluster.sh kill 3)
  CHROMIUM       the browser binary (default: chromium)

Checks, each printed as "ok - ..." or "FAILED - ...", then a closing line
"ui: N passed, N failed":
  1. the page loads from n1 without a script error and shows three
     members, each up;
  2. it shows the traffic the test sent (a put row with a rate);
  3. the ring picture has one cell per partition;
  4. the PBS panel draws one curve per (R, W) for N=3 once /admin/pbs
     answers; on a build without /admin/pbs (404) it says "waiting for
     traffic", and its renderer is checked on the agreed answer shape,
     answered by the browser itself (Fetch.fulfillRequest);
  5. at phone width (390 px) the page does not scroll sideways;
  6. after n3 is killed the open page shows n3 down within
     UI_DOWN_WITHIN seconds (default 10), the other two still up.
Screenshots: ui-desktop.png, ui-phone.png, ui-node-down.png (and
ui-pbs-agreed-answer.png from the renderer check).
"""

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

NODES = os.environ["UI_NODES"].split(",")
ARTIFACTS = os.environ.get("UI_ARTIFACTS") or tempfile.mkdtemp(prefix="dynkv-ui-")
KILL = os.environ["UI_KILL"]
CHROMIUM = os.environ.get("CHROMIUM", "chromium")
DOWN_WITHIN = float(os.environ.get("UI_DOWN_WITHIN", "10"))
N = 3


class Cdp:
    """A DevTools protocol connection to a browser started here."""

    def __init__(self, profile):
        # fd 3: the browser reads commands; fd 4: it writes answers.
        cmd_r, self._cmd_w = os.pipe()
        self._ans_r, ans_w = os.pipe()

        def wire_fds():
            # Moved out of the way first: either pipe end may itself be 3 or 4.
            r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 100)
            w = fcntl.fcntl(ans_w, fcntl.F_DUPFD, 100)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             "--hide-scrollbars", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(ARTIFACTS, "chromium.log"), "wb"),
            # The pipes are close-on-exec; only the two copies made by
            # wire_fds (inheritable) reach the browser.
            preexec_fn=wire_fds, close_fds=False)
        os.close(cmd_r)
        os.close(ans_w)
        self._next = 0
        self._answers = {}
        self._cond = threading.Condition()
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self._ans_r, 1 << 16)
            if not chunk:
                with self._cond:
                    self._answers[None] = "closed"
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._answers[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self.events.put(msg)

    def call(self, method, params=None, session=None, timeout=30):
        self._next += 1
        mid = self._next
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._answers:
                if None in self._answers:
                    raise RuntimeError(f"the browser closed during {method}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{method}: no answer in {timeout} s")
                self._cond.wait(left)
            ans = self._answers.pop(mid)
        if "error" in ans:
            raise RuntimeError(f"{method}: {ans['error']}")
        return ans.get("result", {})

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Page:
    """One tab."""

    def __init__(self, cdp):
        self.cdp = cdp
        target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.sid = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.errors = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method, params=None, timeout=30):
        return self.cdp.call(method, params, session=self.sid, timeout=timeout)

    def drain_events(self, on_event=None):
        """Handles the events received so far (script errors are kept)."""
        while True:
            try:
                ev = self.cdp.events.get_nowait()
            except queue.Empty:
                return
            if ev.get("method") == "Runtime.exceptionThrown":
                d = ev["params"]["exceptionDetails"]
                self.errors.append(d.get("exception", {}).get("description") or d.get("text"))
            if ev.get("method") == "Log.entryAdded":
                e = ev["params"]["entry"]
                # A Content-Security-Policy refusal or a script error (not
                # the network's log of a 404 the page expects).
                if e.get("level") == "error" and e.get("source") in ("security", "javascript"):
                    self.errors.append(f"{e['source']}: {e.get('text')}")
            if on_event:
                on_event(ev)

    def goto(self, url):
        self.call("Page.navigate", {"url": url})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expr, timeout, on_event=None):
        """Polls `expr` until it is truthy; answers (value, seconds waited),
        or (last value, None) at the deadline."""
        start = time.monotonic()
        value = None
        while time.monotonic() - start < timeout:
            self.drain_events(on_event)
            try:
                value = self.eval(expr)
            except RuntimeError:
                value = None
            if value:
                return value, time.monotonic() - start
            time.sleep(0.2)
        return value, None

    def viewport(self, width, height, mobile=False):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def screenshot(self, name):
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path = os.path.join(ARTIFACTS, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path


def http(method, url, body=None):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def traffic(rounds):
    """Writes and reads keys through every node, at R=W=1, 2 and all, so
    that every replica's latencies are measured; answers what failed."""
    failures = []
    for i in range(rounds):
        node = NODES[i % len(NODES)]
        w = ["1", "2", "all"][i % 3]
        st, body = http("PUT", f"{node}/kv/ui-{i % 50}?w={w}", f"value {i}".encode())
        if st >= 300:
            failures.append(f"PUT w={w}: {st} {body[:200]!r}")
        r = ["1", "2", "all"][i % 3]
        st, body = http("GET", f"{NODES[(i + 1) % len(NODES)]}/kv/ui-{i % 50}?r={r}")
        # At R=W=1 a read may miss the write (that is what the PBS panel
        # measures); at R=W=2 or all it may not.
        if st not in ((200, 300, 404) if r == "1" else (200, 300)):
            failures.append(f"GET r={r}: {st} {body[:200]!r}")
    return failures


results = []


def check(ok, what):
    results.append(bool(ok))
    print(("ok - " if ok else "FAILED - ") + what, flush=True)
    return ok


# The agreed /admin/pbs answer, for the renderer check on a build that
# does not serve it yet: probabilities rise with t, faster for larger R+W.
def agreed_pbs(r, w):
    ts = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    base = 1.0 if r + w > N else 0.80 + 0.05 * (r + w)

    def p(t):
        return min(1.0, base + (1 - base) * (1 - 2 ** (-t / 8)))

    return {"n": N, "r": r, "w": w, "t_ms": 10.0, "probability": round(p(10), 4),
            "t_999_ms": 0.0 if base >= 1 else 90.0, "trials": 10000,
            "samples": {"w": 100, "a": 100, "r": 100, "s": 100},
            "curve": [{"t_ms": float(t), "probability": round(p(t), 4)} for t in ts]}


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    print(f"artefacts in {ARTIFACTS}", flush=True)
    fails = traffic(300)
    check(not fails, f"300 writes and 300 reads through the three nodes ({len(fails)} failed: {fails[:3]})")

    profile = tempfile.mkdtemp(prefix="dynkv-ui-chromium-")
    cdp = Cdp(profile)
    try:
        page = Page(cdp)
        page.viewport(1280, 900)
        page.goto(NODES[0] + "/ui")
        up, took = page.wait_for(
            "document.querySelectorAll('#member-cards [data-node][data-state=up]').length === 3 && "
            "document.body.dataset.loaded === 'true'", 20)
        nodes = page.eval("[...document.querySelectorAll('#member-cards [data-node]')].map(e => e.dataset.node + ':' + e.dataset.state).join(' ')")
        check(up, f"three members show up, each up ({nodes}; after {took and round(took, 1)} s)")

        rows, _ = page.wait_for(
            "[...document.querySelectorAll('#ops tr[data-op=put]')].filter(r => parseFloat(r.cells[2].textContent) > 0).length", 10)
        check(rows, f"the requests table shows the writes ({rows} nodes with a put rate)")

        cells = page.eval("document.querySelectorAll('#ring-grid .cell').length")
        partitions = json.loads(http("GET", NODES[0] + "/admin/overview")[1])["ring"]["partitions"]
        check(cells == partitions, f"the ring shows {cells} partition cells of {partitions}")

        status, _ = http("GET", f"{NODES[0]}/admin/pbs?n={N}&r=1&w=1&t_ms=10")
        if status == 404:
            waiting, _ = page.wait_for("document.querySelector('#pbs').dataset.pbsState === 'waiting' && document.querySelector('#pbs-msg').textContent", 15)
            check(waiting and "waiting for traffic" in waiting,
                  f"without /admin/pbs the PBS panel says {waiting!r}")
            page.drain_events()
            page.screenshot("ui-desktop.png")
            # The renderer on the agreed answer: the browser answers
            # /admin/pbs itself until the check is done.
            page.call("Fetch.enable", {"patterns": [{"urlPattern": "*/admin/pbs*"}]})

            def fulfil(ev):
                if ev.get("method") != "Fetch.requestPaused":
                    return
                p = ev["params"]
                q = dict(kv.split("=") for kv in p["request"]["url"].split("?", 1)[1].split("&"))
                body = json.dumps(agreed_pbs(int(q["r"]), int(q["w"]))).encode()
                page.call("Fetch.fulfillRequest", {
                    "requestId": p["requestId"], "responseCode": 200,
                    "responseHeaders": [{"name": "content-type", "value": "application/json"}],
                    "body": base64.b64encode(body).decode()})

            drawn, took = page.wait_for("document.querySelectorAll('#pbs-chart svg path.curve').length", 25, fulfil)
            check(drawn == N * N, f"on the agreed /admin/pbs answer the PBS panel draws {drawn} curves of {N * N}")
            page.screenshot("ui-pbs-agreed-answer.png")
            page.call("Fetch.disable")
        else:
            drawn, took = page.wait_for("document.querySelectorAll('#pbs-chart svg path.curve').length === %d && document.querySelectorAll('#pbs-chart svg path.curve').length" % (N * N), 40)
            state = page.eval("document.querySelector('#pbs').dataset.pbsState + ': ' + document.querySelector('#pbs-msg').textContent")
            check(drawn == N * N, f"the PBS panel draws {drawn} curves of {N * N} from /admin/pbs ({state})")
            rows = page.eval("[...document.querySelectorAll('#pbs-table tbody tr')].map(r => r.cells[r.cells.length - 1].textContent).join(', ')")
            check(rows, f"the PBS table lists t for 99.9 % per curve: {rows}")
            page.drain_events()
            page.screenshot("ui-desktop.png")

        page.viewport(390, 844, mobile=True)
        page.wait_for("window.innerWidth === 390", 5)
        overflow = page.eval("document.documentElement.scrollWidth - window.innerWidth")
        check(overflow is not None and overflow <= 1, f"at phone width nothing scrolls sideways ({overflow} px too wide)")
        page.screenshot("ui-phone.png")
        page.viewport(1280, 900)

        started = time.monotonic()
        subprocess.run(KILL, shell=True, check=True)
        down, took = page.wait_for(
            "document.querySelector('#member-cards [data-node=n3]')?.dataset.state === 'down' && "
            "document.querySelectorAll('#member-cards [data-state=up]').length === 2", DOWN_WITHIN)
        label = page.eval("document.querySelector('#member-cards [data-node=n3]')?.innerText.replace(/\\n/g, ' | ')")
        check(down, f"n3 shows down {round(time.monotonic() - started, 1)} s after its kill (limit {DOWN_WITHIN} s): {label}")
        page.screenshot("ui-node-down.png")
        page.drain_events()
        check(not page.errors, f"no script error or refused style or script in the page ({page.errors})")
    finally:
        cdp.close()
        shutil.rmtree(profile, ignore_errors=True)
    passed = sum(results)
    failed = len(results) - passed
    print(f"screenshots: {', '.join(sorted(f for f in os.listdir(ARTIFACTS) if f.endswith('.png')))} in {ARTIFACTS}")
    print(f"ui: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
