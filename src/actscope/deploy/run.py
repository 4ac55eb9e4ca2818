"""deploy(): run + scheme -> a quantized Hugging Face checkpoint in OUT (atomically), recorded in the run.

    out, record = deploy(DeployConfig(run="runs/smollm2-135m-quick", out="ckpt", scheme="fp8-static"))

The checkpoint is built in a temporary directory beside OUT and renamed into
place when complete, so OUT is never half written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError, UserError
from ..rundir import RunView
from . import compressed_tensors, kv, modelopt
from .plan import Plan, build_plan
from .record import add_to_run, deployment_record, write_record
from .schemes import deploy_scheme
from .weights import write_shards

FORMATS = ("compressed-tensors", "modelopt")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SKIP = (".safetensors", "model.safetensors.index.json", "actscope-gguf.json")


@dataclass(frozen=True)
class DeployConfig:
    run: str
    out: str
    scheme: str = "fp8-static"
    format: str = "compressed-tensors"
    clip: str = "absmax"
    dtype: str | None = None  # unquantized tensors and scales; default: the source checkpoint's
    overwrite: bool = False
    verify: bool = False
    cache_dir: str | None = None
    kv_cache: str | None = None  # "fp8-e4m3[:tensor|:head]": static KV-cache scales from the run (kv.py)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise UserError(f"unknown --format {self.format!r}", f"choose {', '.join(FORMATS)}")
        if self.dtype is not None and self.dtype not in _DTYPES:
            raise UserError(f"unknown --dtype {self.dtype!r}", f"choose {', '.join(_DTYPES)}")
        if self.kv_cache is not None:
            kv.parse(self.kv_cache)
            if self.format != "compressed-tensors":
                raise UserError(
                    f"--kv-cache is written in the compressed-tensors layout, not {self.format}",
                    "drop --kv-cache or use --format compressed-tensors",
                )


def check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise UserError(f"output {out} already exists", "pass --overwrite to replace it or choose another -o")
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a directory", "choose another -o")


def source_model(view, cache_dir=None):
    """The run's model as a local directory, the same weights the run measured (sha256)."""
    from ..models import resolve_source

    model = view.model
    source = model.get("source")
    try:
        src = resolve_source(str(source), cache_dir)
    except ModelError as err:
        raise ModelError(
            f"the run's model {source!r} cannot be found ({err.problem})",
            "restore the model file the run measured (run.json model.path) or measure again",
        ) from None
    if model.get("sha256") and src.info.get("sha256") and model["sha256"] != src.info["sha256"]:
        raise ModelError(
            f"the run's model {source!r} changed since it was measured (sha256 differs)",
            "measure the current model again before deploying",
        )
    return src


def model_layout(directory: Path) -> tuple[list[str], str | None, dict]:
    """(linear layers quant/e2e.py quantizes, LM head path, config.json) from a meta-device model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..quant.e2e import linear_layers

    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    head_path = next((p for p, m in model.named_modules() if m is head), None)
    return linear_layers(model), head_path, json.loads((Path(directory) / "config.json").read_text())


def deploy(cfg: DeployConfig) -> tuple[Path, dict]:
    t0 = time.time()
    out = Path(cfg.out)
    check_out(out, cfg.overwrite)
    view = RunView(cfg.run)
    scheme = deploy_scheme(cfg.scheme, cfg.clip, view.quant)
    src = source_model(view, cfg.cache_dir)
    linear, head, config = model_layout(src.directory)
    dtype_name = cfg.dtype or _source_dtype(config)
    dtype = _DTYPES[dtype_name]
    scale_dtype = torch.float32 if cfg.format == "modelopt" else dtype
    plan = build_plan(view, scheme, linear, head, scale_dtype)
    if cfg.format == "modelopt":
        modelopt.check(plan)
    kv_cfg = kv.kv_cache(view, cfg.kv_cache, scale_dtype) if cfg.kv_cache else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        _write(cfg, plan, src.directory, tmp, config, dtype, dtype_name, kv_cfg)
        record = deployment_record(plan, view, cfg, cfg.format, dtype_name, time.time() - t0)
        record["kv_cache"] = kv_cfg[2] if kv_cfg else None
        write_record(tmp, record)
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if cfg.verify:
        from .verify import verify

        record["verify"] = verify(out, view, plan, dtype)
        write_record(out, record)
    add_to_run(Path(cfg.run), _run_entry(out, record))
    return out, record


def _write(cfg, plan: Plan, src: Path, tmp: Path, config: dict, dtype, dtype_name: str, kv_cfg) -> None:
    fmt = compressed_tensors if cfg.format == "compressed-tensors" else modelopt
    kv_scheme, kv_tensors = (kv_cfg[0], kv_cfg[1]) if kv_cfg else (None, None)
    weight_map = write_shards(src, tmp, fmt.transform(plan, dtype), kv_tensors)
    missing = [m for m in plan.modules if f"{m}.weight" not in weight_map]
    if missing:
        raise ModelError(
            f"the source weights have no tensor for {len(missing)} linear layers (e.g. {missing[0]})",
            "the checkpoint does not match its config; re-convert or re-download the model",
        )
    if cfg.format == "compressed-tensors":
        qc = compressed_tensors.quantization_config(plan, kv_scheme)
    else:
        qc = modelopt.quantization_config(plan)
        hq = modelopt.hf_quant_config(plan)
        (tmp / "hf_quant_config.json").write_text(json.dumps(hq, indent=2) + "\n")
    config = {k: v for k, v in config.items() if k != "torch_dtype"}
    config.update(dtype=dtype_name, quantization_config=qc)
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for p in src.iterdir():
        if p.is_file() and p.name != "config.json" and not p.name.endswith(_SKIP):
            shutil.copy2(p, tmp / p.name)


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished checkpoint into place; an old OUT (--overwrite) goes only once it is."""
    tmp.chmod(0o755)  # mkdtemp / mkstemp make owner-only entries; a checkpoint is for others to read
    for p in tmp.iterdir():
        p.chmod(0o644)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _source_dtype(config: dict) -> str:
    d = config.get("dtype") or config.get("torch_dtype") or "float32"
    return d if d in _DTYPES else "float32"


def _run_entry(out: Path, record: dict) -> dict:
    keep = ("scheme", "quant_scheme", "format", "clip", "dtype", "created", "ignore", "fallbacks", "verify")
    kv_scheme = (record.get("kv_cache") or {}).get("scheme")
    return {"out": str(out.resolve()), **{k: record.get(k) for k in keep}, "kv_cache": kv_scheme}
