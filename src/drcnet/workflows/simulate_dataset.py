"""``drcnet simulate``: a whole dataset file (HDF5, the schema of :mod:`drcnet.data.schema`) from real templates.

The forward model renders the objects (:mod:`drcnet.simulate.dataset`); this
module writes them block by block as they arrive, atomically, with the
provenance and the template table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drcnet.data.schema import OPTIMAL_1D, DatasetWriter
from drcnet.library.template import Template
from drcnet.provenance import atomic_path, provenance
from drcnet.simulate.dataset import PreparedDataset, SimulationConfig, prepare_dataset, render_blocks


def simulate_dataset(
    config: SimulationConfig,
    templates: Sequence[Template],
    out: str | Path,
    data_root: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    prepared: PreparedDataset | None = None,
    extra_config: dict[str, object] | None = None,
    label_convention: str = "mk",
) -> Path:
    """Render the dataset described by ``config`` into ``out`` (HDF5, written atomically).

    Parameters
    ----------
    config
        What to render.
    templates
        Loaded templates (F, G, K); see :func:`drcnet.library.load_templates`.
    out
        Output file.
    data_root
        Reference-data root for the sky and extinction curve (default ``$DRCNET_DATA``).
    workers
        Worker processes (default: all cores).
    progress
        Show a progress bar.
    prepared
        A ready-made split, plan and forward model (e.g. the survey population of
        :mod:`drcnet.simulate.population`); by default made here from ``config`` and ``templates``.
    extra_config
        More settings to record in the file's ``config`` and provenance (e.g. the population's).
    label_convention
        What ``label`` holds, stored as the root attribute ``label_convention``: ``"mk"`` (library stars'
        MK types; the LAMOST-convention label goes to ``label_lamost``/``subclass_lamost`` beside it) or
        ``"lamost"`` (the survey population).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ValueError
        No F, G or K template.
    """
    from tqdm import tqdm

    prepared = prepared or prepare_dataset(config, templates, data_root)
    n = len(prepared.plan)
    recorded = {**config.model_dump(mode="json"), **(extra_config or {})}
    attrs = {
        "provenance": provenance(recorded, config.seed),
        "config": recorded,
        "seed": config.seed,
        "n_objects": n,
        "kind": "simulated",
        "label_convention": label_convention,
    }
    lamost = ("label_lamost", "subclass_lamost") if prepared.has_lamost_labels else ()
    optional = (*OPTIMAL_1D, *lamost)
    out = Path(out)
    with atomic_path(out) as tmp, DatasetWriter(tmp, n, prepared.param_names, attrs, optional) as writer:
        writer.add_table("templates", prepared.template_table())
        bar = tqdm(total=n, desc=f"simulate {out.name}", unit="obj", disable=not progress)
        for start, rows in render_blocks(prepared, config, workers):
            writer.write(start, rows)
            bar.update(len(rows["label"]))
        bar.close()
    return out
