"""Text from outside (corpus samples, domains, ids, file names, model labels) made safe per medium.

Such text reaches terminals, Markdown and HTML/SVG. Two things make it hostile:

- control characters (ESC starts terminal escape sequences: clear screen, colours, OSC-8
  links; a newline splits a table row or a "one-line" error) and Unicode bidi controls
  (U+202E and friends reorder what a reader sees, "Trojan source"). `visible` turns every one
  into a printable escape such as \\x1b or \\u202e, so nothing is lost and nothing acts.
- markup of the medium: rich's [tags], Markdown's | ` * _ [ ] < >, mathtext's $ in matplotlib.

One function per medium: `term` (rich markup), `md_cell` and `md_code` (Markdown table cells),
`svg` (matplotlib labels). HTML goes through Jinja autoescaping plus `visible` (report/html.py).
"""

from __future__ import annotations

import re

# C0 and C1 controls (Unicode category Cc), line/paragraph separators, and the bidi
# embedding, override, isolate and mark characters.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#!])")


def _escape_char(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def visible(text, keep: str = "") -> str:
    """`text` with every control and bidi character written as an escape (\\x1b, \\u202e);
    characters in `keep` (e.g. "\\n\\t" for multi-line text) stay as they are."""
    s = str(text)
    if keep:
        return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _escape_char(m), s)
    return _UNSAFE.sub(_escape_char, s)


def term(text, keep: str = "") -> str:
    """For rich markup strings (f-strings given to Console.print, table cells): no escape
    sequence, no [tag]. Consoles are made with emoji=False, so :name: stays text too."""
    from rich.markup import escape

    return escape(visible(text, keep))


def plain(text, keep: str = ""):
    """A rich Text (never parsed as markup) for text printed on its own."""
    from rich.text import Text

    return Text(visible(text, keep))


def md_cell(text) -> str:
    """Literal text in a Markdown table cell: one line, no pipe that splits the row, no inline
    HTML (< > & as entities), no emphasis, code span or link syntax."""
    s = visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_code(text) -> str:
    """Literal text as a Markdown code span inside a table cell: fenced by more backticks than
    any run inside it, pipes escaped (GFM splits cells before it parses code spans)."""
    s = visible(text).replace("|", "\\|")
    fence = "`" * (max((len(r) for r in re.findall("`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_fence(body: str, info: str = "") -> str:
    """A fenced code block that no line of `body` can close (the fence outgrows its backtick runs)."""
    n = max(3, max((len(r) + 1 for r in re.findall("`{3,}", body)), default=3))
    return f"{'`' * n}{info}\n{body}\n{'`' * n}"


def svg(text) -> str:
    """A chart label for matplotlib's SVG: controls and bidi visible, $ not read as mathtext
    (matplotlib escapes < > & itself)."""
    return visible(text).replace("$", r"\$")
