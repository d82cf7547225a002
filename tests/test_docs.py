"""README stays true: every setting and every error code the gateway can emit is documented.

Datasette's way of keeping docs honest: the tests read the source of truth (the settings table in
reapi/settings.py, the `code="..."` literals of the package) and fail when README's tables miss one,
or document a setting that no longer exists.
"""
from __future__ import annotations

import pathlib
import re

from reapi.settings import SETTINGS

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# The demo upstream speaks the providers' own error codes; it is not the gateway.
NOT_THE_GATEWAY = ("mock_upstream",)


def _config_rows() -> dict[str, str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `(REAPI_[A-Z0-9_]+)` \| ([^|]*) \|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    return rows


def test_every_setting_is_in_the_configuration_table_with_its_default():
    rows = _config_rows()
    for s in SETTINGS:
        assert s.env in rows, f"README's configuration table misses {s.env}"
        shown = rows[s.env]
        expected = "unset" if s.default is None else str(s.default)
        assert expected in shown.replace("`", ""), f"{s.env}: README says {shown!r}, the default is {expected!r}"


def test_the_configuration_table_documents_no_setting_that_does_not_exist():
    known = {s.env for s in SETTINGS}
    stale = set(_config_rows()) - known
    assert not stale, f"README documents settings reapi does not read: {sorted(stale)}"


def _emitted_codes() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "reapi").rglob("*.py"):
        if any(part in NOT_THE_GATEWAY for part in path.parts):
            continue
        codes |= set(re.findall(r"\bcode=\"([a-z0-9_]+)\"", path.read_text()))
    return codes


def test_every_error_code_the_gateway_emits_is_documented():
    errors = README.split("## Errors", 1)[1]
    missing = sorted(c for c in _emitted_codes() if f"`{c}`" not in errors)
    assert not missing, f"README's error tables miss these codes: {missing}"


def test_the_code_scan_finds_codes():
    # guards the test above against a scan that silently finds nothing
    assert {"invalid_api_key", "insufficient_balance", "upstream_bad_response"} <= _emitted_codes()
