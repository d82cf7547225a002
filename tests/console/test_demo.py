"""`reapi demo` prints the console's URL and a demo user who can sign in (a new password each run)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import requests

from tests.harness import free_port


def _sign_in(base: str, email: str, password: str) -> requests.Response:
    s = requests.Session()
    form = s.get(base + "/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    s.post(base + "/login", data={"email": email, "password": password, "csrf_token": token}, timeout=10)
    return s.get(base + "/console", params={"format": "json"}, timeout=10, allow_redirects=False)


def test_demo_prints_a_console_user_who_can_sign_in(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db", "REAPI_LOG_LEVEL": "warning"}
    passwords = []
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "reapi", "demo", "--port", str(port)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            m = None
            for line in proc.stdout:
                m = re.search(r"console:\s+(\S+)/console\s+\(sign in as (\S+) / (\S+)\)", line)
                if m:
                    break
            assert m and m.group(1) == base, proc.stderr.read() if proc.poll() is not None else m
            email, password = m.group(2), m.group(3)
            passwords.append(password)
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(base + "/healthz", timeout=2)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline and proc.poll() is None, "demo did not start"
                    time.sleep(0.1)
            r = _sign_in(base, email, password)
            assert r.status_code == 200 and r.json()["balances_usd"]["chat"] == "10.00"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert passwords[0] != passwords[1]
