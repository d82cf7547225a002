"""The submit + poll examples of a task model's docs page: curl (with jq) and Python (standard
library urllib), with this deployment's base URL and a body the model accepts. The key (an rk_live_
tasks key) is read from REAPI_API_KEY. tests/site runs both against a real gateway."""
from __future__ import annotations

import json
import shlex


def curl(base: str, endpoint: str, body: dict) -> str:
    return (f"TASK_ID=$(curl -sS {base}{endpoint} \\\n"
            "  -H \"Authorization: Bearer $REAPI_API_KEY\" \\\n"
            "  -H \"Content-Type: application/json\" \\\n"
            f"  -d {shlex.quote(json.dumps(body))} | jq -r .id)\n"
            "echo \"task $TASK_ID\"\n"
            "for i in $(seq 1 600); do\n"
            f"  TASK=$(curl -sS {base}/api/v1/tasks/$TASK_ID -H \"Authorization: Bearer $REAPI_API_KEY\")\n"
            "  STATUS=$(echo \"$TASK\" | jq -r .status)\n"
            "  if [ \"$STATUS\" != processing ]; then echo \"$TASK\"; break; fi\n"
            "  sleep 1\n"
            "done\n")


def python(base: str, endpoint: str, body: dict) -> str:
    return ("import json, os, time, urllib.request\n\n"
            f"BASE = {json.dumps(base)}\n"
            "HEADERS = {\"Authorization\": \"Bearer \" + os.environ[\"REAPI_API_KEY\"],\n"
            "           \"Content-Type\": \"application/json\"}\n\n\n"
            "def call(method, path, body=None):\n"
            "    data = json.dumps(body).encode() if body is not None else None\n"
            "    req = urllib.request.Request(BASE + path, data=data, headers=HEADERS, method=method)\n"
            "    with urllib.request.urlopen(req, timeout=30) as resp:\n"
            "        return json.load(resp)\n\n\n"
            f"task = call(\"POST\", {json.dumps(endpoint)}, {body!r})\n"
            "for _ in range(600):\n"
            "    task = call(\"GET\", \"/api/v1/tasks/\" + task[\"id\"])\n"
            "    if task[\"status\"] != \"processing\":\n"
            "        break\n"
            "    time.sleep(1)\n"
            "print(json.dumps(task, indent=2))\n")


def all_samples(base: str, endpoint: str, body: dict) -> list[dict]:
    return [{"lang": "curl", "label": "curl (submit, then poll)", "code": curl(base, endpoint, body)},
            {"lang": "python", "label": "Python (urllib, submit then poll)", "code": python(base, endpoint, body)}]
