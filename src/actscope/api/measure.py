"""actscope.measure(): the CLI's `measure` for a model in memory or a model source.

    run = actscope.measure(model, tok, corpus=["some text", "more text"], sites="paper")
    run = actscope.measure("smollm2-135m", corpus="quick", out="runs/smol", max_length=512)

A model the caller passes in is theirs: it is never moved or cast, and its train/eval
modes and the RNG state are restored afterwards (measuring runs in eval mode under
inference_mode, through the same engine as the CLI).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from .. import engine
from ..config import MeasureConfig
from ..corpus import Corpus, Sample, load_corpus
from ..errors import CorpusError, UserError
from .run import Run

# MeasureConfig fields that measure() takes as its own arguments, or that make no sense here.
_OWN = ("model", "corpus", "sites", "out")
OPTIONS = tuple(f.name for f in dataclasses.fields(MeasureConfig) if f.name not in _OWN)
LIST_CORPUS = "texts"  # the name of a corpus given as a list of strings


def measure(
    model: nn.Module | str = "gemma-3-270m",
    tokenizer=None,
    corpus: str | Sequence[str] | Corpus = "quick",
    sites: str | None = None,
    *,
    out: str | None = None,
    **options,
) -> Run:
    """Measure `model` on `corpus` and return the Run (written to `out` when given).

    model:   an nn.Module already in memory (any device or dtype, device_map included;
             pass its tokenizer too), or a model source as on the CLI (a built-in name,
             a Hugging Face directory, a .gguf file, a Hub id).
    corpus:  a built-in profile ("quick", "standard", "full"), a file or directory path,
             or a list of strings (sample ids texts-1, texts-2 ... as a JSONL file's lines).
    sites:   kinds, presets (paper, all) or globs, as `--sites`.
    options: the CLI's flags in snake case: max_length=, bos=, overflow=, limit=,
             token_budget=, max_batch=, chat_template=, dtype=, device= ... (dtype, device and
             the other loading options apply to a model source only); download=True fetches
             a Hub id (safetensors and tokenizer, revision= pinned to its commit).

    >>> run = actscope.measure(model, tok, corpus=["The cat sat on the mat."])
    >>> run.summary["M"], run.table("sites").num_rows
    """
    cfg = _config(model, corpus, sites, out, options)
    texts = _corpus(corpus)
    if isinstance(model, nn.Module):
        loaded = in_memory(model, tokenizer, options)
    elif isinstance(model, str):
        loaded = engine.load(model, cfg)
    else:
        raise UserError(
            f"model is a {type(model).__name__}", "pass an nn.Module with its tokenizer, or a model source"
        )
    from ..rundir import RunView
    from ..runner import measure as measure_to_dir
    from ..runner import measure_in_memory

    with preserved(loaded.model):
        if out is not None:
            return Run(RunView(measure_to_dir(cfg, loaded=loaded, corpus=texts)))
        return Run.in_memory(*measure_in_memory(cfg, loaded, texts))


def _config(model, corpus, sites, out, options: dict) -> MeasureConfig:
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], OPTIONS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"options: {', '.join(OPTIONS)}"
        raise UserError(f"unknown option {unknown[0]!r}", hint)
    source = model if isinstance(model, str) else "<in-memory>"
    name = corpus if isinstance(corpus, str) else LIST_CORPUS
    return MeasureConfig(
        model=source, corpus=name, sites=sites, out=None if out is None else str(out),
        **{"progress": False, **options},
    )  # fmt: skip


def _corpus(corpus) -> Corpus:
    """A Corpus from a profile name, a path, a Corpus, or a list of strings."""
    if isinstance(corpus, Corpus):
        return corpus
    if isinstance(corpus, str):
        return load_corpus(corpus)
    if not isinstance(corpus, Sequence) or any(not isinstance(t, str) for t in corpus):
        raise CorpusError(
            f"corpus is a {type(corpus).__name__}, not a profile, a path or a list of strings",
            "pass e.g. corpus=['some text', ...] or corpus='quick'",
        )
    # Named like the lines of a texts.jsonl file ({"text": ...} per line), blank ones skipped.
    samples = tuple(
        Sample(f"{LIST_CORPUS}-{n}", "user", LIST_CORPUS, t) for n, t in enumerate(corpus, 1) if t.strip()
    )
    if not samples:
        raise CorpusError("corpus list has no samples", "give a corpus with at least one non-empty text")
    return Corpus(LIST_CORPUS, samples)


def in_memory(model: nn.Module, tokenizer, options: dict):
    """A LoadedModel for a model the caller loaded (its manifest section describes it as it is)."""
    from ..models import LoadedModel, tokenizer_info

    given = [k for k in (*engine.MODEL_FIELDS, "download", "revision") if options.get(k) not in (None, False)]
    if given:
        raise UserError(
            f"{given[0]}= applies to a model source, not to a model already in memory "
            f"({engine.model_dtype(model)} on {engine.input_device(model)})",
            f"move or cast the model yourself, or drop {given[0]}=",
        )
    if tokenizer is None:
        raise UserError(
            "a model in memory needs its tokenizer", "pass it: actscope.measure(model, tokenizer, ...)"
        )
    return LoadedModel(model, tokenizer, model_info(model) | tokenizer_info(tokenizer))


def model_info(model: nn.Module) -> dict:
    import transformers

    config = getattr(model, "config", None)
    info = {
        "source": getattr(config, "_name_or_path", "") or type(model).__name__,
        "kind": "in_memory",
        "model_type": getattr(config, "model_type", None),
        "architecture": type(model).__name__,
        "n_params": sum(p.numel() for p in model.parameters()),
        "dtype": engine.model_dtype(model),
        "device": str(engine.input_device(model)),
        "transformers": transformers.__version__,
    }
    if getattr(model, "hf_device_map", None):
        info["device_map"] = {k: str(v) for k, v in model.hf_device_map.items()}
    return info


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Eval mode while measuring; afterwards every module's train/eval mode and the torch
    (and CUDA) RNG states are as they were, so a training loop continues unchanged."""
    modes = [(m, m.training) for m in model.modules()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
