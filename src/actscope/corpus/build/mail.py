"""Web/email text and news briefs from the SpamAssassin public mail corpus (npm stdlib-js dataset).

Mail from the corpus's RSS gateway (headline + summary items of 2002 news
feeds) becomes the news domain, grouped into per-feed digests; all other ham
and spam becomes web_email. The two never share a message.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

from .doc import Doc
from .text import est_tokens

GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2")
DIGEST_TOKENS = 128  # close a news digest once it holds this many tokens
_RSS_FROM = re.compile(r"^(\w[\w.-]*) <rssfeeds@", re.I)
_RSS_NOISE = re.compile(r"^(?:URL|Date): .*$|^\[\d+\] https?://\S+$", re.M)


def _messages(root: Path) -> Iterator[tuple[str, Message]]:
    for group in GROUPS:
        for path in sorted((root / "package/data" / group).glob("*.txt")):
            raw = path.read_bytes()
            yield (
                f"{group}_{path.stem.split('.')[0]}",
                email.message_from_bytes(raw, policy=email.policy.compat32),
            )


def _plain_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            charset = part.get_content_charset() or "latin-1"
            try:
                return payload.decode(charset, "replace")
            except LookupError:
                return payload.decode("latin-1")
    return ""


def _feed(msg: Message) -> str | None:
    m = _RSS_FROM.match(str(msg.get("From", "")))
    return m.group(1).lower() if m else None


def read_email(roots: list[Path]) -> Iterator[Doc]:
    for mid, msg in _messages(roots[0]):
        if _feed(msg):
            continue
        body = _plain_text(msg).strip()
        if body:
            yield Doc(mid, f"Subject: {msg.get('Subject', '')}\n\n{body}")


def read_news_briefs(roots: list[Path]) -> Iterator[Doc]:
    """Consecutive items of one feed, joined until a digest reaches DIGEST_TOKENS."""
    items: dict[str, list[tuple[str, str]]] = {}
    for mid, msg in _messages(roots[0]):
        feed = _feed(msg)
        if feed:
            summary = _RSS_NOISE.sub("", _plain_text(msg)).strip()
            headline = re.sub(r"\s+", " ", str(msg.get("Subject", ""))).strip()
            items.setdefault(feed, []).append((mid, f"{headline}\n{summary}".strip()))
    for feed in sorted(items):
        digest: list[str] = []
        first = ""
        for mid, item in items[feed]:
            first = first or mid
            digest.append(item)
            if est_tokens("\n\n".join(digest)) >= DIGEST_TOKENS:
                yield Doc(f"{feed}_{first}", "\n\n".join(digest))
                digest, first = [], ""
        if digest:
            yield Doc(f"{feed}_{first}", "\n\n".join(digest))
