"""The public catalog: the served, not hidden models of the snapshot, with their prices as billing
uses them (reapi.catalog.Price, from the same snapshot) and their operator-written entries."""
from __future__ import annotations

from dataclasses import dataclass

from reapi.billing.money import format_multiplier, format_usd
from reapi.billing.pricing import cost_nano
from reapi.catalog import ModelInfo, Price

CATEGORIES = ("chat", "image", "video", "audio", "tools")


@dataclass(frozen=True)
class Entry:
    name: str
    price: Price
    info: ModelInfo
    aliases: tuple[str, ...]
    channel_types: tuple[str, ...]  # "openai", "anthropic": which API shapes serve it

    @property
    def summary(self) -> str:
        """The description's first sentence (or a generated line)."""
        text = (self.info.description or "").strip()
        if not text:
            return f"{self.name}: chat completions through this gateway's OpenAI-compatible API."
        first = text.split("\n", 1)[0]
        cut = first.find(". ")
        return first[: cut + 1] if 0 < cut < 200 else first[:240]

    def rates(self) -> dict:
        """USD per 1M tokens as decimal strings, both tiers resolved (None: no long-context tier)."""
        p = self.price

        def r(micro: int | None, mult: int = 1000) -> str:
            # micro-USD x thousandths = nano-USD per 1M tokens: exact, no rounding
            return format_usd((p.input_micro if micro is None else micro) * mult)

        base = {"input": r(p.input_micro), "cached_input": r(p.cached_input_micro),
                "cache_write": r(p.cache_write_micro), "output": r(p.output_micro)}
        lc = p.long_context
        long = None
        if lc is not None:
            im, om = lc.input_multiplier_milli, lc.output_multiplier_milli
            long = {"threshold_tokens": lc.threshold_tokens, "input_multiplier": format_multiplier(im),
                    "output_multiplier": format_multiplier(om), "input": r(p.input_micro, im),
                    "cached_input": r(p.cached_input_micro, im), "cache_write": r(p.cache_write_micro, im),
                    "output": r(p.output_micro, om)}
        return {"base": base, "long_context": long}

    def example(self) -> dict:
        """A worked example: 10,000 input tokens (2,000 of them cache reads) and 1,000 output tokens,
        costed by billing's own function (exact nano-USD, rounded up once)."""
        prompt, cached, out = 10_000, 2_000, 1_000
        return {"prompt_tokens": prompt, "cached_tokens": cached, "completion_tokens": out,
                "cost_nano": cost_nano(self.price, prompt, out, cached, 0)}

    def view(self) -> dict:
        p = self.price
        return {"name": self.name, "summary": self.summary, "description": self.info.description,
                "category": self.info.category, "tags": list(self.info.tags), "aliases": list(self.aliases),
                "context_window": p.context_window, "max_output_tokens": p.max_output_tokens,
                "usd_per_mtok": self.rates(), "apis": list(self.channel_types)}


def entries(snap) -> list[Entry]:
    """The public catalog of a snapshot, by name."""
    types: dict[str, set[str]] = {}
    for (_, model), tiers in snap.pools.items():  # one pass: which channel types serve each model
        types.setdefault(model, set()).update(ch.type for tier in tiers for ch in tier)
    aliases: dict[str, list[str]] = {}
    for alias, model in snap.aliases.items():
        aliases.setdefault(model, []).append(alias)
    out = []
    for name in snap.served_models(None):
        info = snap.info.get(name, ModelInfo())
        if info.hidden:
            continue
        out.append(Entry(name, snap.prices[name], info, tuple(sorted(aliases.get(name, ()))),
                         tuple(sorted(types.get(name, ())))))
    return out


def find(snap, name: str) -> Entry | None:
    """The entry of `name` (a model's own name or an alias of it), None when not public."""
    model = snap.aliases.get(name, name)
    return next((e for e in entries(snap) if e.name == model), None)
