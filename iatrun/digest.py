"""What a cell's config hash and a tuning record's setting are computed from (the parts both share).

Root keys added after results were recorded are left out of both digests while they hold their
neutral value (:data:`HASH_NEUTRAL`), so run folders and tuning records made before a key existed
still match; any other value enters, and a cell that sets it is a different cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HASH_NEUTRAL = {"tf32": False}
# Root keys that change where and how a result is written, never the result: left out of both digests.
PRESENTATION = ("out", "results_dir", "artifacts", "logger", "plots")


def digest_view(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` without the :data:`PRESENTATION` keys and the :data:`HASH_NEUTRAL` keys that hold
    their neutral value."""
    return {
        k: v
        for k, v in cfg.items()
        if k not in PRESENTATION and not (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k])
    }
