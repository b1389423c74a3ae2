"""The model image's figures: build times (cold and cached), sizes, reproducibility, start-up
and latency under emulation, and a ``python:3.11-slim``-style image of the same packages.

``make bench-image`` builds the demo model's bento (or takes ``--archive``), then for each
platform:

* a **cold** build (empty layer cache): seconds per layer, each layer's compressed and unpacked
  size; then a second cold build into another empty cache, whose digests must be the same
  (``--no-cold-twice`` skips it);
* a **cached** build (base and site layers from the cache): seconds, and the same digest again;
* the image **started** as the smoke test starts it (under QEMU for a foreign platform): seconds
  to ``/readyz``, then ``--requests`` sequential one-row ``/predict`` calls (p50, p99 ms): what
  a local track served from the image's root would cost.

As root it also builds, for comparison, a root as ``python:3.11-slim`` has it (Debian
``minbase``, what ``debian:bookworm-slim`` is, plus Python and the packages that image adds:
ca-certificates, netbase, tzdata), with this machine's architecture, since it runs maintainer
scripts: no registry is reachable here to pull the real one. It reports its size with the same
site layer, and what the image cuts from its base.

Results: a table on the terminal, ``reports/bench-image.md`` and ``.json``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from steps import build, containerize, evaluate, register, train
from steps.core.cli_support import new_app, reports_errors
from steps.core.platforms import parse_platforms
from steps.core.settings import DataSettings, Settings
from steps.image import builder, recipe, smoke
from steps.image.smoke import HOST_ARCH
from steps.ml.synthetic import generate_churn

REPO = Path(__file__).resolve().parents[1]
MIRROR = "http://deb.debian.org/debian"
SLIM_EXTRA = ("python3", "ca-certificates", "netbase", "tzdata", "libstdc++6", "libgomp1")

app = new_app("Measure the model image: build times, sizes, reproducibility, start-up.")
console = Console()


@app.command()
@reports_errors
def main(
    platforms: Annotated[str, typer.Option(help="platforms to build")] = "linux/arm64,linux/amd64",
    archive: Annotated[
        Path | None, typer.Option(help="a bento archive; unset: build the demo model's")
    ] = None,
    requests: Annotated[int, typer.Option(min=1, help="sequential /predict calls")] = 200,
    cold_twice: Annotated[bool, typer.Option(help="a second cold build must match")] = True,
    out: Annotated[Path, typer.Option(help="report path without suffix")] = REPO
    / "reports"
    / "bench-image",
) -> None:
    """Build, time and measure the image; print a table and write the report."""
    chosen = parse_platforms(platforms)
    with tempfile.TemporaryDirectory(prefix="loopline-bench-image-") as scratch_dir:
        scratch = Path(scratch_dir)
        bento_archive = archive or _demo_bento(scratch / "state")
        bento = recipe.read_bento(containerize.unpack_archive(bento_archive, scratch / "bento"))
        labels = containerize.labels(bento)
        rows, expected = smoke.smoke_rows(bento.directory)
        results = [
            _measure(bento, labels, platform, scratch, requests, cold_twice, rows, expected)
            for platform in chosen
        ]
        slim = _slim_estimate(scratch) if os.geteuid() == 0 else None
    report = {"platforms": results, "slim_estimate": slim, "host_arch": HOST_ARCH}
    _print(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(_markdown(report))
    console.print(f"wrote {out.with_suffix('.md')} and .json")


def _demo_bento(state: Path) -> Path:
    data = state / "churn.parquet"
    state.mkdir(parents=True)
    generate_churn(data, rows=4000, seed=7)
    settings = Settings(state_dir=state, data=DataSettings(uri=str(data)))
    trained = train.run(settings, pipeline_run="bench-image")
    evaluate.run(settings, trained.run_id)
    version = register.run(settings, trained.run_id, pipeline_run="bench-image").model_version
    return Path(build.run(settings, version=version).archive_uri.removeprefix("file://"))


def _measure(
    bento: recipe.Bento,
    labels: dict[str, str],
    platform: str,
    scratch: Path,
    requests: int,
    cold_twice: bool,
    rows: list[dict[str, Any]],
    expected: list[float],
) -> dict[str, Any]:
    arch = recipe.architecture(platform)

    def timed_build(name: str, cache: Path) -> tuple[builder.BuiltImage, float]:
        started = time.perf_counter()
        built = builder.build(bento, [platform], labels, scratch / f"layout-{arch}-{name}", cache,
                              MIRROR, progress=lambda line: console.print(f"  {line}"))  # fmt: skip
        return built, round(time.perf_counter() - started, 1)

    cold, cold_s = timed_build("cold", scratch / f"cache-{arch}-1")
    digests = {"cold": cold.top.digest}
    if cold_twice:
        digests["cold again"] = timed_build("cold2", scratch / f"cache-{arch}-2")[0].top.digest
    cached, cached_s = timed_build("cached", scratch / f"cache-{arch}-1")
    digests["cached"] = cached.top.digest
    (image,) = cold.images
    console.print(f"  {platform}: starting the image (smoke test, then {requests} requests)")
    report = smoke.smoke_test(cold.layout, platform, rows, expected, 600.0)
    with smoke.running(cold.layout, platform, 600.0) as started:
        latencies = _latencies(started.url, rows[0], requests)
        ready = started.seconds_to_ready
    return {
        "platform": platform,
        "emulated": report.emulated,
        "cold_build_s": cold_s,
        "cached_build_s": cached_s,
        "layer_seconds": image.seconds,
        "layers": {
            name: {"bytes": layer.blob.size, "unpacked_bytes": layer.unpacked_bytes}
            for name, layer in image.layers.items()
        },
        "compressed_bytes": sum(layer.blob.size for layer in image.layers.values()),
        "unpacked_bytes": sum(layer.unpacked_bytes for layer in image.layers.values()),
        "digests": digests,
        "reproducible": len(set(digests.values())) == 1,
        "seconds_to_ready": [report.seconds_to_ready, ready],
        "smoke_max_abs_diff": report.max_abs_diff,
        "predict_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p99": round(statistics.quantiles(latencies, n=100)[98], 2),
        },
    }


def _latencies(url: str, row: dict[str, Any], requests: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=30.0) as http:
        http.post("/predict", json=row).raise_for_status()
        for _ in range(requests):
            started = time.perf_counter()
            http.post("/predict", json=row).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _slim_estimate(scratch: Path) -> dict[str, Any]:
    """Sizes of a python:3.11-slim-like root (native architecture) and of what the image's base
    cuts, both measured here."""
    console.print("  python:3.11-slim-like root (Debian minbase + python3, this architecture)")
    slim = _mmdebstrap("root", "minbase", SLIM_EXTRA, scratch / "slim.tar")
    extracted = _mmdebstrap("chrootless", "extract", recipe.BASE_PACKAGES, scratch / "extract")
    cut = {name: _tree_bytes(extracted / name) for name in recipe.CUT_FROM_BASE}
    return {
        "slim_base_unpacked_bytes": slim.stat().st_size,
        "slim_base_bytes": _gzip_size(slim),
        "extract_base_unpacked_bytes": _tree_bytes(extracted),
        "cut_bytes": {name: size for name, size in cut.items() if size},
        "has_shell": any((extracted / sh).exists() for sh in ("bin/sh", "usr/bin/sh")),
        "has_apt": (extracted / "usr" / "bin" / "apt-get").exists(),
    }


def _mmdebstrap(mode: str, variant: str, packages: tuple[str, ...], target: Path) -> Path:
    argv = ["mmdebstrap", "--quiet", f"--mode={mode}", f"--variant={variant}",
            f"--include={','.join(packages)}", recipe.SUITE, str(target), MIRROR]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True)
    return target


def _tree_bytes(root: Path) -> int:
    if not root.exists():
        return 0
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _gzip_size(path: Path) -> int:
    target = path.with_suffix(".tar.gz")
    with path.open("rb") as source, gzip.GzipFile(target, "wb", compresslevel=6, mtime=0) as sink:
        shutil.copyfileobj(source, sink, 1 << 20)
    return target.stat().st_size


def _mb(size: float) -> str:
    return f"{size / 1e6:,.0f} MB"


def _print(report: dict[str, Any]) -> None:
    table = Table(title="the model image")
    for column in ("platform", "cold build", "cached build", "compressed", "unpacked",
                   "same digest", "ready", "/predict p50 / p99"):  # fmt: skip
        table.add_column(column)
    for row in report["platforms"]:
        table.add_row(
            row["platform"] + (" (emulated)" if row["emulated"] else ""),
            f"{row['cold_build_s']} s",
            f"{row['cached_build_s']} s",
            _mb(row["compressed_bytes"]),
            _mb(row["unpacked_bytes"]),
            "yes" if row["reproducible"] else "NO",
            " / ".join(f"{s} s" for s in row["seconds_to_ready"]),
            f"{row['predict_ms']['p50']} / {row['predict_ms']['p99']} ms",
        )
    console.print(table)


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# The model image",
        "",
        "Generated by `make bench-image` (`scripts/bench_image.py`); figures from one run on "
        f"this machine ({report['host_arch']}, 2 cores).",
        "",
        "| platform | cold build | cached build | compressed | unpacked | digest same cold/cold/"
        "cached | seconds to /readyz | /predict p50 / p99 |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in report["platforms"]:
        lines.append(
            f"| {row['platform']}{' (QEMU)' if row['emulated'] else ''} | {row['cold_build_s']} s"
            f" | {row['cached_build_s']} s | {_mb(row['compressed_bytes'])} | "
            f"{_mb(row['unpacked_bytes'])} | {'yes' if row['reproducible'] else 'NO'} | "
            f"{' / '.join(str(s) for s in row['seconds_to_ready'])} | "
            f"{row['predict_ms']['p50']} / {row['predict_ms']['p99']} ms |"
        )
    lines += ["", "Per layer (compressed / unpacked, seconds on a cold build):", ""]
    for row in report["platforms"]:
        parts = [
            f"{name} {_mb(layer['bytes'])} / {_mb(layer['unpacked_bytes'])}, "
            f"{row['layer_seconds'][name]} s"
            for name, layer in row["layers"].items()
        ]
        lines.append(f"- {row['platform']}: " + "; ".join(parts))
    slim = report["slim_estimate"]
    if slim:
        lines += [
            "",
            "Against a `python:3.11-slim`-style base (Debian minbase, as `debian:bookworm-slim`, "
            "with Python, ca-certificates, netbase and tzdata; built here, not pulled): "
            f"{_mb(slim['slim_base_bytes'])} compressed, {_mb(slim['slim_base_unpacked_bytes'])} "
            f"unpacked, before the same site layer. The image's base extracts "
            f"{_mb(slim['extract_base_unpacked_bytes'])} and cuts "
            + ", ".join(f"{name} ({_mb(size)})" for name, size in slim["cut_bytes"].items())
            + f"; shell: {'yes' if slim['has_shell'] else 'none'}, "
            f"apt: {'yes' if slim['has_apt'] else 'none'}.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app()
