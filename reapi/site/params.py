"""The request body parameters a model page documents: types, ranges, allowed values and
nullability come from the validator's own tables (reapi.api.validation.parameter_rules); this file
adds only prose, the upstream default and an example value (tests/site check every example passes
the validator)."""
from __future__ import annotations

from reapi.api.validation import parameter_rules

# name -> (default, what it does, an example value)
DOCS: dict[str, tuple[str, str, object]] = {
    "model": ("", "The model's name (or one of its aliases).", "MODEL"),
    "messages": ("", "The conversation: objects with a `role` and a `content` (a string or content parts).",
                 [{"role": "user", "content": "Hello"}]),
    "stream": ("false", "Send the answer as server-sent events, chunk by chunk.", True),
    "stream_options": ("null", "With `stream`: `{\"include_usage\": true}` adds a last chunk with the usage.",
                       {"include_usage": True}),
    "max_completion_tokens": ("the model's max output", "The most output tokens (reasoning included).", 256),
    "max_tokens": ("the model's max output", "The older name of `max_completion_tokens`.", 256),
    "temperature": ("1", "Sampling temperature.", 0.7),
    "top_p": ("1", "Nucleus sampling: the probability mass considered.", 0.9),
    "n": ("1", "How many choices to generate (each is billed).", 1),
    "stop": ("null", "Up to 4 sequences where the answer stops.", ["\n\n"]),
    "presence_penalty": ("0", "Penalise tokens already present.", 0.5),
    "frequency_penalty": ("0", "Penalise tokens by their frequency so far.", 0.5),
    "seed": ("null", "Best-effort deterministic sampling.", 42),
    "logprobs": ("false", "Return the log probabilities of the output tokens.", True),
    "top_logprobs": ("null", "With `logprobs`: how many alternatives per token.", 2),
    "tools": ("null", "Function tools the model may call.",
              [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]),
    "tool_choice": ("auto", "`none`, `auto`, `required` or a named function.", "auto"),
    "parallel_tool_calls": ("true", "Allow several tool calls in one turn.", True),
    "response_format": ("text", "`{\"type\": \"json_object\"}` or a `json_schema` for structured output.",
                        {"type": "json_object"}),
    "reasoning_effort": ("medium", "How much the model reasons before answering (reasoning models).", "low"),
    "verbosity": ("medium", "How long the answer tends to be.", "low"),
    "user": ("null", "Your end user's id, passed upstream for abuse monitoring.", "user-1234"),
    "metadata": ("null", "String keys and string values, passed upstream with the call.", {"order": "42"}),
    "group": ("the key's first group", "reapi's own: which channel group serves the call.", "default"),
}
# the order a page lists them in
ORDER = tuple(DOCS)


def documented(apis: tuple[str, ...] | list[str] = ("openai",)) -> list[dict]:
    """The page's parameter table: the validator's rule of each documented field plus its prose. For a
    model only Claude channels serve (`apis` == ["anthropic"]), the fields the Anthropic adapter refuses
    (reapi.relay.anthropic.UNSUPPORTED_PARAMS) are left out and those it drops are marked; served by
    both kinds, a refused field says so."""
    from reapi.relay.anthropic import IGNORED_PARAMS, UNSUPPORTED_PARAMS

    claude = "anthropic" in apis
    only_claude = claude and "openai" not in apis
    rules = {r["name"]: r for r in parameter_rules()}
    out = []
    for name in ORDER:
        if only_claude and name in UNSUPPORTED_PARAMS:
            continue
        rule = rules[name]  # a KeyError here is a documented field the validator does not know
        default, text, example = DOCS[name]
        rng = ""
        if "minimum" in rule:
            lo, hi = rule["minimum"], rule["maximum"]
            rng = (f"{lo} to {hi}" if lo is not None and hi is not None else f"≥ {lo}" if lo is not None
                   else f"≤ {hi}" if hi is not None else "any")
        if rule.get("enum"):
            rng = ", ".join(rule["enum"])
        if rule.get("max_items"):
            rng = f"at most {rule['max_items']} items"
        if claude and name in UNSUPPORTED_PARAMS:
            text += " Not on Claude channels (400 `unsupported_parameter`)."
        elif claude and name in IGNORED_PARAMS:
            text += " Accepted and not forwarded on Claude channels."
        out.append({**rule, "default": default, "description": text, "range": rng, "example": example})
    return out
