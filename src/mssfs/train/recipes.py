"""The training recipes of the CPU-time study, as ``mssfs train`` options.

Each recipe continues (``--init``) or distils (``--teacher``) an export; which export,
and the CPU config file they share, are arguments, so that the study starts every
variant from the package weights and the background job (``tools/keep_training.py``)
from the last export that passed its gate. The study and its rule:
docs/decisions/cpu-time-study.md.
"""

from __future__ import annotations

#: the default training mix with its weights spelled out (``--mix``); ``figures`` adds to it
DEFAULT_MIX = ("blob=0.096,quadrics=0.112,torus=0.048,capsules=0.08,revolution=0.072,extrusion=0.072,"
               "bumps=0.088,ridges=0.08,craters=0.072,noise=0.08")


def recipes(config: str, init: str, teacher: str) -> dict[str, list[str]]:
    """``{name: options}``: ``config`` the YAML file every recipe starts from
    (``configs/cpu.yaml``), ``init`` the export the continued recipes start from,
    ``teacher`` the export the distilled (smaller) networks learn from.

    * ``base``: the CPU continuation used so far (256 patches per step, lr 1e-4, min-SNR 5);
    * ``gpu-recipe``: the GPU runs' batch and rate (8,192 patches as 32 accumulated
      micro-batches of 256, lr 4e-4);
    * ``x0``, ``v``: ``base`` predicting x0 or v instead of the noise;
    * ``half``, ``quarter``, ``eighth``: smaller networks from random weights, half of the
      loss the teacher's prediction, lr 4e-4;
    * ``figures``: ``base`` with 20 % of the maps from the stimulus-like ``figures`` family.
    """
    common = ["--config", config, "--linear-attn-from", "1"]
    base = common + ["--init", init, "--min-snr-gamma", "5", "--lr", "1e-4", "--patches-per-step", "256",
                     "--warmup-steps", "50"]
    distil = common + ["--teacher", teacher, "--distill-weight", "0.5", "--lr", "4e-4", "--patches-per-step", "256",
                       "--warmup-steps", "200"]
    return {
        "base": base,
        "gpu-recipe": common + ["--init", init, "--min-snr-gamma", "5", "--lr", "4e-4", "--patches-per-step", "8192",
                                "--accumulate", "32", "--warmup-steps", "20"],
        "x0": base + ["--prediction", "x0"],
        "v": base + ["--prediction", "v"],
        "half": distil + ["--base-width", "12"],
        "quarter": distil + ["--base-width", "8"],
        "eighth": distil + ["--base-width", "8", "--res-blocks", "1"],
        "figures": base + ["--mix", DEFAULT_MIX + ",figures=0.2"],
    }
