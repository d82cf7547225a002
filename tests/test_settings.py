"""Settings are checked at start-up: a value out of range stops the process with a message
naming the variable and its range, exit status 1, no traceback."""
import subprocess
import sys

import pytest

from reapi.settings import LIMITS, Settings, SettingsError


@pytest.mark.parametrize("field", sorted(LIMITS))
@pytest.mark.parametrize("bad", ["0", "-1"])
def test_zero_or_negative_is_refused_from_the_environment(field, bad):
    var, lo, hi = LIMITS[field]
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({var: bad})
    assert str(exc.value) == f"{var} must be between {lo} and {hi}, got {bad}"
    assert exc.value.code == str(exc.value)  # SystemExit with a message: exit status 1


@pytest.mark.parametrize("field", sorted(LIMITS))
def test_range_ends_are_accepted_and_one_beyond_is_not(field):
    var, lo, hi = LIMITS[field]
    assert getattr(Settings.from_env({var: str(lo)}), field) == lo
    assert getattr(Settings.from_env({var: str(hi)}), field) == hi
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: str(hi + 1)})


def test_settings_made_directly_are_checked_too():
    with pytest.raises(SettingsError, match="REAPI_MAX_REQUEST_SECONDS must be between 1 and"):
        Settings(max_request_seconds=0)
    with pytest.raises(SettingsError, match="REAPI_CHANNEL_COOLDOWN_S must be an integer"):
        Settings(channel_cooldown_s="30")  # type: ignore[arg-type]
    assert Settings(max_request_seconds=1).max_request_seconds == 1


@pytest.mark.parametrize("env,message", [
    ({"REAPI_MAX_BODY_BYTES": "lots"}, "REAPI_MAX_BODY_BYTES must be an integer, got 'lots'"),
    ({"REAPI_LOG_LEVEL": "verbose"}, "REAPI_LOG_LEVEL must be one of"),
    ({"REAPI_DATABASE_URL": "mysql://h/db"}, "REAPI_DATABASE_URL must be"),
    ({"REAPI_REDIS_URL": "127.0.0.1:6379"}, "REAPI_REDIS_URL must be"),
    ({"REAPI_PG_HOLD_COMMIT": "maybe"}, "REAPI_PG_HOLD_COMMIT must be one of async, sync"),
])
def test_other_bad_values(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_defaults_and_case_of_log_level():
    s = Settings.from_env({"REAPI_LOG_LEVEL": "WARNING"})
    assert s.log_level == "warning" and s.max_header_bytes == 65536 and s.header_timeout_s == 10
    assert s.body_timeout_s == 60
    assert s.pg_hold_commit == "async" and Settings.from_env({"REAPI_PG_HOLD_COMMIT": "SYNC"}).pg_hold_commit == "sync"


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["migrate"], ["ledger", "verify"]])
def test_cli_exits_1_with_the_message_and_no_traceback(tmp_path, command):
    env = {"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/s.db", "REAPI_MAX_REQUEST_SECONDS": "0", "PATH": "/usr/bin"}
    out = subprocess.run([sys.executable, "-m", "reapi", *command], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stderr.strip() == "REAPI_MAX_REQUEST_SECONDS must be between 1 and 604800, got 0", out.stderr
    assert not (tmp_path / "s.db").exists()  # refused before touching the store
