"""What operators may write, as pydantic models: the one statement of the rules (names, URLs,
upstream keys, ranges) that the admin API's bodies, the CLI and the operations share.

Money fields are decimal strings (or integers); floats are refused. They are parsed to integer
nano/micro units by reapi.operations.money, never here.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints,
                      ValidationError)

from reapi.errors import GatewayError, bad_request

Money = StrictStr | StrictInt

I32 = 2**31 - 1  # the store's INTEGER columns: larger values are refused with 400, not a database error
NAME_MAX = 200  # the store's name columns are VARCHAR(200)
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no control characters (CR/LF would split log lines and headers)
WALLETS = ("chat", "tasks")  # an account's balances; a key's workspace names the wallet it spends
Wallet = Literal["chat", "tasks"]
ChannelType = Literal["openai", "anthropic", "ark", "openai-images", "reapi-tasks"]  # the last three: tasks


def check_base_url(url: str) -> str:
    """An absolute http(s) URL with a host and nothing a client could smuggle in: no userinfo,
    query, fragment, whitespace or control characters. Raises ValueError."""
    if any(c <= " " or c == "\x7f" for c in url):
        raise ValueError("base_url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError("base_url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an absolute http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise ValueError("base_url must not contain user info (put the credential in api_key)")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("base_url must not have a query or a fragment")
    if port == 0:
        raise ValueError("base_url has an invalid port")
    return url


Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
BaseUrl = Annotated[str, StringConstraints(max_length=2000), AfterValidator(check_base_url)]
# Sent as a header value on every upstream call: visible ASCII only, so CR/LF can never split it.
ApiKey = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
Names = Annotated[list[Name], Field(min_length=1, max_length=1000)]
MAX_ALIASES = 100  # per model
CATEGORIES = ("chat", "image", "video", "audio", "tools")  # the public catalog's sections
Tag = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9 ._-]*$")]
# one paragraph of plain text (rendered escaped, never as HTML); no control characters but newlines
Description = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00-\x09\x0b-\x1f\x7f]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelIn(Strict):
    name: Name
    type: ChannelType
    base_url: BaseUrl
    api_key: ApiKey
    models: Names
    groups: Names = Field(default_factory=lambda: ["default"])
    priority: int = Field(default=0, ge=-I32, le=I32)
    weight: int = Field(default=1, ge=0, le=I32)
    model_map: dict[Name, Name] = Field(default_factory=dict, max_length=1000)
    enabled: bool = True


class ChannelPatch(Strict):
    name: Name | None = None
    type: ChannelType | None = None
    base_url: BaseUrl | None = None
    api_key: ApiKey | None = None
    models: Names | None = None
    groups: Names | None = None
    priority: int | None = Field(default=None, ge=-I32, le=I32)
    weight: int | None = Field(default=None, ge=0, le=I32)
    model_map: dict[Name, Name] | None = Field(default=None, max_length=1000)
    enabled: bool | None = None


class LongContextIn(Strict):
    threshold_tokens: int = Field(ge=0, le=I32)
    input_multiplier: Money
    output_multiplier: Money


class ModelIn(Strict):
    input_usd_per_mtok: Money
    output_usd_per_mtok: Money
    cached_input_usd_per_mtok: Money | None = None
    cache_write_usd_per_mtok: Money | None = None
    context_window: int = Field(gt=0, le=I32)
    max_output_tokens: int = Field(gt=0, le=I32)
    long_context: LongContextIn | None = None
    aliases: Annotated[list[Name], Field(max_length=MAX_ALIASES)] | None = None  # extra names; [] or None: none
    # the public catalog's entry (reapi.site); None: keep what is stored (a new model: none, chat, [], shown)
    description: Description | None = None
    category: Literal["chat", "image", "video", "audio", "tools"] | None = None
    tags: Annotated[list[Tag], Field(max_length=20)] | None = None
    hidden: bool | None = None


class GroupIn(Strict):
    rpm: int | None = Field(default=None, ge=1, le=I32)
    tpm: int | None = Field(default=None, ge=1, le=I32)
    total_rpm: int | None = Field(default=None, ge=1, le=I32)
    total_tpm: int | None = Field(default=None, ge=1, le=I32)


class AccountIn(Strict):
    name: Name


class CreditIn(Strict):
    amount_usd: Money
    note: str | None = Field(default=None, max_length=2000)
    wallet: Wallet = "chat"


class KeyIn(Strict):
    """expires_at: a date (the key works until that day's 00:00 UTC) or an ISO date-time (UTC when
    it names no zone); None: the key never expires."""
    name: Name = "default"
    workspace: Wallet = "chat"  # "tasks" keys start rk_live_ and are refused by /v1 like unknown keys
    groups: Names | None = None
    models: Names | None = None
    spend_limit_usd: Money | None = None
    rpm: int | None = Field(default=None, ge=1, le=I32)
    tpm: int | None = Field(default=None, ge=1, le=I32)
    expires_at: datetime | None = None
    webhook_url: str | None = None  # tasks keys: the default webhook (checked by create_key)


class NameIn(Strict):
    """A name given on its own (a model or group in a path)."""
    name: Name


def error_param(err: dict, drop: tuple[str, ...] = ()) -> str | None:
    """The dotted field a pydantic error is about (`models.0`), without pydantic's own union-branch
    tags ("str", "function-after[...]") and without the location names in `drop` ("body", "path")."""
    loc = [str(p) for p in err.get("loc", ()) if p not in drop
           and not (isinstance(p, str) and (p in ("str", "int", "float", "bool") or "[" in p))]
    return ".".join(loc) or None


def refusal(exc: ValidationError, drop: tuple[str, ...] = (), rename: dict[str, str] | None = None) -> GatewayError:
    """A pydantic refusal as the gateway's 400 naming its field."""
    first = exc.errors()[0] if exc.errors() else {}
    param = error_param(first, drop)
    if param is not None and rename:
        param = rename.get(param, param)
    msg = f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg", "invalid request"))
    return bad_request(msg, param=param)


def checked(model: type[Strict], rename: dict[str, str] | None = None, /, **values) -> Strict:
    """`model(**values)`, or GatewayError(400) naming the first bad field (renamed by `rename`,
    e.g. {"name": "model"} when the value came from a path)."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise refusal(exc, rename=rename) from None


def not_found(what: str, id: int) -> GatewayError:
    return GatewayError(404, f"{what} {id} not found.", type="invalid_request_error", code="not_found")
