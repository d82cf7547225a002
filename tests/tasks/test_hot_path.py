"""The chat path never loads the task gateway: building the app imports no reapi.tasks module, and
a chat call through a gateway whose task worker is off leaves it unimported; /api/v1 loads it on
its first request."""
import subprocess
import sys

SCRIPT = r'''
import asyncio, sys, tempfile
from tests.harness import Gateway, gateway_settings, start_upstream

async def main():
    up = await start_upstream()
    gw = await Gateway(gateway_settings(f"sqlite:///{tempfile.mkdtemp()}/r.db", task_worker="off")).start()
    try:
        s = await gw.setup(up)
        r = await gw.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
        loaded = sorted(m for m in sys.modules if m.startswith("reapi.tasks"))
        print("after chat:", loaded)
        status, _, _ = await gw.raw("GET", "/api/v1/balance")
        print("after /api/v1:", status, "reapi.tasks.api" in sys.modules)
    finally:
        await gw.stop()
        await up.runner.cleanup()

asyncio.run(main())
'''


def test_chat_never_imports_the_task_gateway():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "after chat: []" in r.stdout, r.stdout
    assert "after /api/v1: 401 True" in r.stdout, r.stdout
