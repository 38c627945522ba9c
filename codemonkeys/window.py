"""Prompts planned against the model's context window (DESIGN.md): how large a model's window is, how many
tokens a text takes, and how a conversation that outgrew the window is shrunk to fit.

A window is the model's input limit minus room for its answer. Counting uses the model's tokenizer where
litellm has one for it, four characters a token otherwise; the tokenizer runs only when the cheap estimate
says a prompt is near the limit, since it costs a fraction of a second on a large prompt.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from codemonkeys.config import ModelSettings
from codemonkeys.llm import content_text, litellm_module
from codemonkeys.sandbox.base import truncate_middle

log = logging.getLogger("codemonkeys.window")

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # tokens a chat message costs beyond its text (role, separators)
NEAR = 0.8  # below this share of the window the cheap estimate is trusted
OPENING_SHARE = 0.6  # the most a conversation's opening may take of the window: the rest is for its turns


def estimate(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@functools.cache
def _known_to_litellm(model: str) -> bool:
    try:
        litellm_module().get_model_info(model)
    except Exception:
        return False
    return True


_COUNTS: dict[tuple[str, str], int] = {}  # (model, sha1 of a text): a system prompt is counted once, not per turn


def window_of(model: str, models: ModelSettings) -> int:
    """Input tokens the model accepts: the `context_windows` setting, else litellm's model information, else
    `default_context_window`."""
    if model in models.context_windows:
        return models.context_windows[model]
    if _known_to_litellm(model):
        info = litellm_module().get_model_info(model)
        found = info.get("max_input_tokens") or info.get("max_tokens")
        if found:
            return int(found)
    return models.default_context_window


@dataclass
class Window:
    """The prompt budget of one model: `limit` input tokens, of which `answer` are kept for the reply."""

    model: str
    limit: int
    answer: int
    exact: bool = False

    @classmethod
    def of(cls, model: str, models: ModelSettings) -> Window:
        return cls(model, window_of(model, models), models.max_output_tokens, _known_to_litellm(model))

    @property
    def budget(self) -> int:
        """Tokens a prompt may take."""
        return max(self.limit - self.answer, 0)

    @property
    def opening(self) -> int:
        """Tokens a conversation's first messages may take, leaving the rest for its turns."""
        return int(self.budget * OPENING_SHARE)

    def count(self, text: str) -> int:
        """With the model's tokenizer where litellm has one (each distinct text counted once)."""
        if not self.exact:
            return estimate(text)
        key = (self.model, hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest())
        if key not in _COUNTS:
            _COUNTS[key] = int(litellm_module().token_counter(model=self.model, text=text))
        return _COUNTS[key]

    def count_messages(self, messages: Sequence[dict]) -> int:
        return sum(self.count(content_text(m.get("content"))) + MESSAGE_OVERHEAD for m in messages)

    def fits(self, messages: Sequence[dict]) -> bool:
        estimated = sum(estimate(content_text(m.get("content"))) + MESSAGE_OVERHEAD for m in messages)
        if estimated < self.budget * NEAR:
            return True
        return self.count_messages(messages) <= self.budget


def fit(messages: list[dict], window: Window, shorter: Callable[[int], str | None]) -> list[dict]:
    """The messages to send: as they are when they fit; else, oldest first, each message that has a shorter
    form (`shorter(i)`; earlier feedback summarised to its exit codes, earlier answers to what they were) is
    replaced until they fit; the newest message is cut in the middle last. Never changes `messages`."""
    if window.fits(messages):
        return messages
    out = [dict(m) for m in messages]
    for i in range(len(out) - 1):
        short = shorter(i)
        if short is None:
            continue
        out[i]["content"] = short
        if window.fits(out):
            log.info("window: older turns of a conversation shortened to fit %d tokens", window.budget)
            return out
    over = window.count_messages(out) - window.budget
    last = content_text(out[-1]["content"])
    keep = max(len(last) - (over + 64) * CHARS_PER_TOKEN, 200)
    out[-1]["content"] = truncate_middle(last, keep)
    log.warning("window: the newest message was cut by %d characters to fit %d tokens", len(last) - keep, window.budget)
    return out
