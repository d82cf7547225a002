"""`reapi demo` serves the task gateway too: the rk_live_ key it prints submits a Seedance video on
the demo upstream, the task completes with a real MP4 served by the gateway, charged exactly."""
import os
import signal
import subprocess
import sys
import time
import urllib.request

import orjson

from tests.harness import free_port


def call(method, url, key, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else orjson.dumps(body),
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return orjson.loads(r.read())


def test_demo_prints_a_funded_tasks_key_that_completes_a_video(tmp_path):
    port = free_port()
    env = {**os.environ, "REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db", "REAPI_LOG_LEVEL": "warning",
           "REAPI_TASK_POLL_MS": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "reapi", "demo", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        key = None
        for line in proc.stdout:
            if "tasks key:" in line:
                key = line.split()[2]
                break
        assert key and key.startswith("rk_live_")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "demo did not start"
                time.sleep(0.1)
        assert call("GET", base + "/api/v1/balance", key)["credits"] == "10000"
        models = {m["id"] for m in call("GET", base + "/api/v1/models", key)["data"]}
        assert "doubao-seedance-2.0" in models
        t = call("POST", base + "/api/v1/videos/generations", key,
                 {"model": "doubao-seedance-2.0", "prompt": "a cat runs", "duration": 5})
        deadline = time.monotonic() + 30
        while (got := call("GET", f"{base}/api/v1/tasks/{t['id']}", key))["status"] == "processing":
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        assert got["status"] == "completed", got
        with urllib.request.urlopen(got["output"]["video_urls"][0], timeout=5) as r:
            assert r.headers["content-type"] == "video/mp4" and r.read()[4:8] == b"ftyp"
        assert call("GET", base + "/api/v1/balance", key)["credits"] == "9400"  # 5 s x 120 credits
        for path, body, field, ctype in (
                ("images", {"model": "gpt-image-2", "prompt": "a fox", "resolution": "2k"}, "image_urls", "image/png"),
                ("audio", {"model": "mureka-v9-song", "lyrics": "la la la", "number_of_songs": 2}, "audio_urls",
                 "audio/mpeg")):
            t = call("POST", f"{base}/api/v1/{path}/generations", key, body)
            deadline = time.monotonic() + 30
            while (got := call("GET", f"{base}/api/v1/tasks/{t['id']}", key))["status"] == "processing":
                assert time.monotonic() < deadline, got
                time.sleep(0.1)
            assert got["status"] == "completed", got
            with urllib.request.urlopen(got["output"][field][0], timeout=5) as r:
                assert r.headers["content-type"] == ctype
        assert call("GET", base + "/api/v1/balance", key)["credits"] == "9230"  # - 50 (2k image) - 2 x 60 (songs)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
