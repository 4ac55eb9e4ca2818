"""Run directories for the report tests, measured with the real runner on tiny random models.

The corpus is hostile on purpose: every sample carries `<script>` and `<img onerror>`
markup (as whole words of a word-level tokenizer, so token contexts hold them
intact) and one domain name is markup too. Reports must show all of it as text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

SCRIPT = "<script>alert('xss')</script>"
IMG = "<img src=x onerror=alert(1)>"
HOSTILE_DOMAIN = "<b>web</b>"
WORDS = ["hello", "world", "the", "number", "is", ".", "\n", SCRIPT, "<img", "src=x", "onerror=alert(1)>"]
WORDS += [str(i) for i in range(10)]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<bos>", "<unk>", *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )


def _corpus():
    from actscope.corpus import Corpus, Sample

    domains = ["math", "code", HOSTILE_DOMAIN]
    samples = []
    for i in range(9):
        text = f"hello world {SCRIPT} the number is {i} . {IMG} " * (i % 3 + 1)
        samples.append(Sample(f"s{i}", domains[i % 3], "test", text))
    return Corpus("hostile", tuple(samples))


def _model(model_type: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0 if model_type == "llama" else 1)
    kw = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    if model_type == "gemma3_text":
        kw.update(head_dim=8)
    cfg = AutoConfig.for_model(model_type, vocab_size=len(WORDS) + 3, **kw)
    return AutoModelForCausalLM.from_config(cfg).eval()


LOADED: dict[str, SimpleNamespace] = {}  # model_type -> the loaded tiny model, for `actscope quant`


def measure_tiny(out: Path, model_type: str, source: str) -> Path:
    from actscope.config import MeasureConfig
    from actscope.runner import measure

    model = _model(model_type)
    info = {
        "source": source,
        "sha256": f"test-{model_type}",
        "model_type": model.config.model_type,
        "n_params": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
    }
    loaded = SimpleNamespace(model=model, tokenizer=_tokenizer(), info=info)
    LOADED[model_type] = loaded
    cfg = MeasureConfig(out=str(out), overwrite=True, progress=False, sites="all", bos="always")
    return measure(cfg, loaded=loaded, corpus=_corpus())


@pytest.fixture(scope="session")
def hostile():
    """The markup the corpus carries, which reports must show as text."""
    return SimpleNamespace(script=SCRIPT, img=IMG, domain=HOSTILE_DOMAIN)


@pytest.fixture(scope="session")
def run_gemma(tmp_path_factory) -> Path:
    return measure_tiny(tmp_path_factory.mktemp("runs") / "gemma", "gemma3_text", "tiny-gemma3")


@pytest.fixture(scope="session")
def run_llama(tmp_path_factory) -> Path:
    return measure_tiny(tmp_path_factory.mktemp("runs") / "llama", "llama", "org/Tiny-Llama")


@pytest.fixture(scope="session")
def run_quant_llama(run_llama, tmp_path_factory) -> Path:
    """A copy of the llama run with `actscope quant` results (run.json "quant" + quant.parquet)."""
    from actscope.quant.config import QuantConfig
    from actscope.quant.pipeline import run_quant

    dst = tmp_path_factory.mktemp("runs") / "llama-quant"
    shutil.copytree(run_llama, dst)
    cfg = QuantConfig(
        target=str(dst),
        calib=4,
        eval=4,
        schemes=("int8:tensor:absmax", "int8:token", "fp8_e4m3:tensor:absmax"),
        e2e=("int8:tensor:absmax",),
        recommend=False,
    )
    run_quant(cfg, loaded=LOADED["llama"], corpus=_corpus())
    return dst


@pytest.fixture()
def run_copy(run_gemma, tmp_path):
    """A writable copy of the gemma run, for tests that edit run.json or add tables."""

    def make(edit=None) -> Path:
        dst = tmp_path / "run"
        shutil.copytree(run_gemma, dst)
        if edit:
            path = dst / "run.json"
            manifest = json.loads(path.read_text())
            edit(manifest)
            path.write_text(json.dumps(manifest))
        return dst

    return make
