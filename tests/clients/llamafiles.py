"""Helpers of the client tests: runs of tiny MoE models, a float GGUF of a built-in model,
and llama-imatrix's --show-statistics table next to the same figures from our export."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

THREADS = "2"  # the CI machine's cores
# llama-imatrix's argument parser wants --model even where it only reads or converts
# imatrix files (--in-file without a prompt), which never loads it.
NO_MODEL = ("-m", "/dev/null")


def write_float_gguf(src: Path, dst: Path) -> list[str]:
    """Copy a GGUF model with every tensor dequantized to F32: the very weights actscope
    measured (it loads GGUFs dequantized), in the float form llama-quantize starts from.
    Returns the tensor names."""
    import gguf

    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(str(dst), arch=r.fields["general.architecture"].contents())
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name in ("general.architecture", "general.file_type"):
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    shapes = {t.name: tuple(int(n) for n in reversed(t.shape.tolist())) for t in r.tensors}  # numpy order
    for t in r.tensors:
        w.add_tensor_info(t.name, shapes[t.name], np.dtype(np.float32), int(np.prod(shapes[t.name])) * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in r.tensors:  # one tensor in memory at a time
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        w.write_tensor_data(data.reshape(shapes[t.name]))
    w.close()
    return list(shapes)


ROW = re.compile(r"^\s*(\S+)\s+\|\s+(\S+)\s+\|\s+(\S+)\s+(\S+)\s+\S+\s+\S+\s+\S+%\s+\|\s+(\S+)\s")


def llama_statistics(stdout: str) -> dict[str, tuple[float, float]]:
    """llama-imatrix --show-statistics -> {tensor: (Mean, sum of E[A^2])}."""
    out = {}
    for line in stdout.splitlines():
        m = ROW.match(line)
        if m and m.group(2) != "Tensor":
            out[m.group(2)] = (float(m.group(3)), float(m.group(5)))
    return out


def our_statistics(path: Path) -> dict[str, tuple[float, float]]:
    """The same two figures from our GGUF export: the mean over columns (and experts with
    rows) of sum x / count, and the sum of sum x^2 / count."""
    import gguf

    t = {x.name: np.asarray(x.data, dtype=np.float64) for x in gguf.GGUFReader(path).tensors}
    out = {}
    for name in (k.removesuffix(".in_sum2") for k in t if k.endswith(".in_sum2")):
        c = t[f"{name}.counts"].reshape(-1, 1)  # (n_mat, 1)
        ok = c[:, 0] > 0
        s2, s = t[f"{name}.in_sum2"][ok] / c[ok], t[f"{name}.in_sum"][ok] / c[ok]
        out[name] = (float(s.mean()), float(s2.sum()))
    return out


def per_tensor_cosine(ours: Path, theirs: Path) -> dict[str, float]:
    """Cosine of E[x^2] (in_sum2 / counts, all matrices) per tensor both files hold."""
    import gguf

    def ex2(path):
        t = {x.name: np.asarray(x.data, dtype=np.float64) for x in gguf.GGUFReader(path).tensors}
        names = [k.removesuffix(".in_sum2") for k in t if k.endswith(".in_sum2")]
        return {n: (t[f"{n}.in_sum2"] / t[f"{n}.counts"].reshape(-1, 1)).ravel() for n in names}

    a, b = ex2(ours), ex2(theirs)
    return {
        n: float(a[n] @ b[n] / (np.linalg.norm(a[n]) * np.linalg.norm(b[n])))
        for n in sorted(a.keys() & b.keys())
    }


def measure_tiny_moe(out: Path, family: str, tok, idle_expert: int | None = None) -> Path:
    """A run of the tiny random `family` MoE (2 layers, 4 experts, top-2) on short texts;
    idle_expert: a gpt_oss expert the router bias never lets a token reach."""
    from types import SimpleNamespace

    from actscope.adapters.tiny import tiny_model
    from actscope.config import MeasureConfig
    from actscope.corpus import Corpus, Sample
    from actscope.runner import measure

    model = tiny_model(family, vocab_size=len(tok))
    if idle_expert is not None:
        for layer in model.model.layers:
            layer.mlp.router.bias.data[idle_expert] = -1e4
    texts = ["the cat sat on the mat. " * 6, "def f(x): return x - 2; " * 5, "call me ishmael. " * 9]
    corpus = Corpus("tiny-moe", tuple(Sample(f"s{i}", "test", "tests", t) for i, t in enumerate(texts)))
    info = {"source": f"tiny-{family}", "sha256": f"tiny-{family}", "model_type": family}
    cfg = MeasureConfig(out=str(out), overwrite=True, progress=False, sites="all", max_length=64, max_batch=2)
    return measure(cfg, loaded=SimpleNamespace(model=model, tokenizer=tok, info=info), corpus=corpus)
