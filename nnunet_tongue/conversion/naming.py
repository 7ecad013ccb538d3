"""nnU-Net case ids: the file stem when it is safe ASCII, else an ASCII form of it plus a short hash."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_-]+")


def case_id(stem: str) -> str:
    """A case id for a photo stem: the stem itself when it is 1-64 of ``A-Z a-z 0-9 _ -`` (starting with a
    letter or digit); otherwise its accent-stripped ASCII letters and digits (``_`` for anything else) plus
    ``_`` and 8 hex digits of the stem's SHA-1, or ``case_<hash>`` when nothing ASCII is left.

    ``舌头1`` -> ``1_…``, ``café`` -> ``cafe_…``, ``IMG 0001`` -> ``IMG_0001_…``. The CSV maps ids back to files.
    """
    if _SAFE.fullmatch(stem):
        return stem
    normal = unicodedata.normalize("NFC", stem)
    digest = hashlib.sha1(normal.encode("utf-8")).hexdigest()[:8]
    ascii_part = unicodedata.normalize("NFKD", normal).encode("ascii", "ignore").decode("ascii")
    ascii_part = _UNSAFE_RUN.sub("_", ascii_part).strip("_-")[:48]
    return f"{ascii_part}_{digest}" if ascii_part else f"case_{digest}"
