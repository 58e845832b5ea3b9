"""The LLaMA paper's own figures (Touvron et al. 2023, arXiv 2302.13971), as data with the table
and row they come from, so that the planners can be checked against them and a reader can find
each number in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

# Section 6.1 / Table 15's method: energy = GPU-hours x GPU power x PUE, carbon = energy x the
# US national average carbon intensity factor.
PAPER_GPU = "a100-80gb"
PAPER_GPU_POWER_W = 400.0  # Table 15, "GPU Power consumption", every row
PAPER_PUE = 1.1  # section 6.1
PAPER_KG_CO2_PER_KWH = 0.385  # section 6.1


@dataclass(frozen=True)
class CarbonRow:
    """One row of Table 15 ("Carbon footprint of training different models in the same data
    center"), the LLaMA rows."""

    model: str
    gpu_hours: int  # published; the input of the method
    power_w: float
    mwh: int  # "Total power consumption", as printed
    tco2eq: int  # "Carbon emitted", as printed
    source: str = "Table 15"


TABLE_15: tuple[CarbonRow, ...] = (
    CarbonRow("7B", 82_432, PAPER_GPU_POWER_W, 36, 14),
    CarbonRow("13B", 135_168, PAPER_GPU_POWER_W, 59, 23),
    CarbonRow("33B", 530_432, PAPER_GPU_POWER_W, 233, 90),
    CarbonRow("65B", 1_022_362, PAPER_GPU_POWER_W, 449, 173),
)


@dataclass(frozen=True)
class ThroughputClaim:
    """Section 2.4's arithmetic for the 65B run: "when training a 65B-parameter model, our code
    processes around 380 tokens/sec/GPU on 2048 A100 GPU with 80GB of RAM. This means that
    training over our dataset containing 1.4T tokens takes approximately 21 days.\""""

    model: str = "65B"
    tokens_per_gpu_s: float = 380.0
    gpus: int = 2048
    gpu: str = PAPER_GPU
    tokens: int = 1_400_000_000_000
    days: float = 21.0  # "approximately"
    source: str = "section 2.4"


SECTION_2_4 = ThroughputClaim()

# Table 2's training tokens per model (also training/config.py's RECIPES).
TABLE_2_TOKENS: dict[str, int] = {
    "7B": 1_000_000_000_000,
    "13B": 1_000_000_000_000,
    "33B": 1_400_000_000_000,
    "65B": 1_400_000_000_000,
}
TABLE_2_MODELS = tuple(TABLE_2_TOKENS)

# Hoffmann et al. 2022 (Chinchilla): compute-optimal training uses about 20 tokens per parameter.
CHINCHILLA_TOKENS_PER_PARAM = 20
