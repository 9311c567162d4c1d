"""``hotops demo``: run every hotops capability on embedded data and write a report.

The demo needs no data folder: it uses the committed checkpoints and data that ship inside
dependencies (scikit-image's sample photos and faces, scikit-learn's digits). Each
capability is one *section*, a module of this package with a function that receives a
:class:`DemoContext`, writes its figures into the output folder, and returns the markdown
of its part of the report; :data:`SECTIONS` lists them in report order.

Output: ``DIR/report.md`` (machine information, then one part per section) and the
figures it links.
"""
from __future__ import annotations

import datetime
import importlib
import time
from pathlib import Path

from ._context import DemoContext, Section, md_table, time_call

__all__ = ["run_demo", "Section", "SECTIONS", "DemoContext", "time_call"]

#: The demo's capabilities, in report order: ``Section(name, title, "module:function", steps)``
#: with the module in this package.
SECTIONS: list[Section] = [
    Section("saliency", "Class saliency maps: channel-max reduction (Simonyan et al. 2013)",
            "saliency:saliency_section", steps=5),
    Section("vdsr", "Super-resolution (VDSR, Kim et al. 2016)", "vdsr:vdsr_section", steps=2),
    Section("defense", "L0-robust sparse Fourier defence: IHT + top-k CNN (Bafna et al. 2018)",
            "defense:defense_section", steps=3),
    Section("revnet", "Reversible residual networks: activation memory vs depth (Gomez et al. 2017)",
            "revnet:revnet_section", steps=3),
    Section("nmf", "Parts-based faces: NMF by multiplicative updates (Lee & Seung 2001)",
            "nmf:nmf_section", steps=3),
    Section("localization", "Saliency maps, GraphCut boxes and class models (Simonyan et al. 2013)",
            "localization:localization_section", steps=4),
]


def _machine_md(info: dict) -> str:
    from hotops.environment import LABELS

    keys = ("cpu", "cpu_count", "torch_threads", "numba_threads", "numba_threading_layer",
            "torch_cuda", "hotops_cuda_kernels", "cuda_simulator", "platform",
            "python", "hotops", "numpy", "numba", "torch", "scipy", "scikit-image", "matplotlib", "cupy")
    return md_table(("", "value"), [(LABELS.get(k, k), info.get(k)) for k in keys if k in info])


def _resolve(run):
    """A section's run function; ``"module:function"`` strings are imported here."""
    if isinstance(run, str):
        module_name, _, func = run.partition(":")
        return getattr(importlib.import_module(f"{__name__}.{module_name}"), func)
    return run


def run_demo(out_dir="demo-out", quick: bool = False, sections=None, progress: bool = True) -> dict:
    """Run the demo's sections and write ``out_dir/report.md`` and its figures.

    Parameters
    ----------
    out_dir : path
        Created if needed; existing files of the same names are overwritten.
    quick : bool
        Smaller timing batches and fewer repeats (for tests).
    sections : list of str, optional
        Names from :data:`SECTIONS` to run (default: all).
    progress : bool
        Show a tqdm bar over the demo's steps.

    Returns
    -------
    dict with ``report`` (path of report.md), ``figures`` (paths), ``seconds`` (runtime),
    ``sections`` (names run).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = SECTIONS
    if sections is not None:
        known = {s.name: s for s in SECTIONS}
        unknown = [s for s in sections if s not in known]
        if unknown:
            raise ValueError(f"unknown demo sections {unknown}; available: {sorted(known)}")
        chosen = [known[s] for s in sections]

    total = 1 + sum(s.steps for s in chosen)
    with tqdm(total=total, desc="hotops demo", unit="step", disable=not progress) as bar:
        ctx = DemoContext(out, quick, bar)
        ctx.step("machine info")
        from hotops.environment import environment_info

        info = environment_info()
        parts = []
        for s in chosen:
            t = time.perf_counter()
            body = _resolve(s.run)(ctx)
            parts.append(f"## {s.title}\n\n{body}\n\n_Section time: {time.perf_counter() - t:.1f} s._")

    seconds = time.perf_counter() - t0
    head = [
        "# hotops demo report",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by `hotops demo"
        f"{' --quick' if quick else ''}` in {seconds:.1f} s, on embedded data only (the committed "
        "checkpoint and scikit-image sample images).",
        "## Machine",
        _machine_md(info),
    ]
    report = out / "report.md"
    report.write_text("\n\n".join(head + parts) + "\n", encoding="utf-8")
    return {"report": report, "figures": list(ctx.figures), "seconds": seconds,
            "sections": [s.name for s in chosen]}
