"""What the benchmarks share: the measured checkout, the machine, and RESULTS.md, which
holds one top-level section per benchmark (each rewrites only its own)."""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(text: str) -> None:
    """Replace the section whose ``# `` heading starts ``text`` (or append it)."""
    heading = text.splitlines()[0].rstrip()
    old = RESULTS.read_text() if RESULTS.exists() else ""
    lines = old.splitlines(keepends=True)
    begin = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if begin is None:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text
    else:
        end = next((i for i in range(begin + 1, len(lines)) if lines[i].startswith("# ")),
                   len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:begin]) + text.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    RESULTS.write_text(new)


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def package_dir() -> Path:
    """Where the children import otel_llmcost from (the editable checkout, or PYTHONPATH)."""
    spec = importlib.util.find_spec("otel_llmcost")
    if spec is None or spec.origin is None:
        raise SystemExit("otel_llmcost is not importable: run setup.sh")
    return Path(spec.origin).parent


def source_digest() -> str:
    """Digest of the measured package's files: a run must measure one version throughout."""
    digest = hashlib.sha256()
    for path in sorted(package_dir().rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def git_commit() -> str:
    """Commit of the checkout the measured package comes from, and whether it is edited."""
    package = package_dir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package.parent), *args], check=False,
                              capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "no commit"
    edited = git("status", "--porcelain", "--", package.name, "pyproject.toml")
    return f"{commit}{' + uncommitted changes' if edited else ''} ({package})"


def machine(packages: Sequence[str], tools: str) -> list[str]:
    """The "Machine" lines of a section: kernel, CPU, Python and ``tools``, versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    versions = ", ".join(f"{d} {version(d)}" for d in packages)
    return [f"- `{' '.join(platform.uname())}`",
            f"- CPU: {cpu}; {os.cpu_count()} cores; Python {platform.python_version()}; {tools}",
            f"- Packages: {versions}",
            f"- otel-llmcost commit: {git_commit()}"]


def valgrind_version() -> str:
    return subprocess.run(["valgrind", "--version"], check=False, capture_output=True,
                          text=True).stdout.strip()


def spawn(cmd: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a benchmark child; its last stdout line is its JSON result. On failure:
    ``{"error": last stderr line, "stderr": its tail}``."""
    proc = subprocess.run(list(cmd), check=False, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": tail, "stderr": proc.stderr[-4000:]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr[-2000:]
    return result


_TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)


def freeze_heap() -> None:
    """Collect, then move every live object out of the collector's reach (``gc.freeze``).

    Called by a child after its warm-up, before measuring, in every configuration alike.
    A full collection walks the whole heap (openai, pydantic, the OTel SDK, price data:
    ~100,000 objects), and whether one falls inside the N1 or the N2 window shifts with
    any change to what was imported: two commits with the same call path measured
    296 k instructions per call apart. Frozen, the window's collections only walk what
    the measured calls allocated, which is the per-call cost.
    """
    gc.collect()
    gc.freeze()


def callgrind(cmd: Sequence[str], out: Path, env: dict[str, str],
              whole: bool = False) -> tuple[int, dict[str, Any]]:
    """Instructions a child counted between its callgrind toggles (``whole``: all of its
    instructions, start-up included), and its result."""
    result = spawn(["valgrind", "--tool=callgrind", f"--instr-atstart={'yes' if whole else 'no'}",
                    f"--callgrind-out-file={out}", *cmd], env)
    if "error" in result:
        raise RuntimeError(f"callgrind run {out.name} failed: {result['error']}\n"
                           f"{result.get('stderr', '')}")
    match = _TOTALS.search(out.read_text())
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1)), result
