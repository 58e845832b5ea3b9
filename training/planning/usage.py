"""What a training launch consumed: accelerator-hours, energy and tCO2eq, for result.json and
`pretrain`'s metadata, by the same method as the plan (training/planning/carbon.py) so that a
run can be set beside its plan and beside the paper's Table 15.

Energy is measured where it can be: on CUDA with NVML (the `pynvml` module of nvidia-ml-py),
rank 0 reads its GPU's cumulative energy counter at the start and the end, and the job's energy
is that times the world size (every rank runs the same step). Elsewhere (no pynvml, a GPU
without the counter, a CPU) the power is nominal: the board power of the device's row in
training/planning/hardware.py (400 W for an A100, the paper's figure), the paper's A100 figure
for a GPU the table does not know, and an assumed 100 W per process on a CPU; the report says
which. PUE and carbon intensity are the paper's (1.1, 0.385 kg/kWh).

The clock is wall time from the trainer's construction to its result: the steps, checkpoints
and evaluation pauses of this launch (a resumed run reports each launch's own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from training.planning.carbon import CarbonMethod, footprint
from training.planning.hardware import ACCELERATORS, accelerator_for_device_name
from training.planning.paper import PAPER_GPU, PAPER_GPU_POWER_W


@dataclass
class UsageMeter:
    """Started with the run; `report()` at its end."""

    world_size: int
    nominal_power_w: float
    nominal_source: str
    started: float
    energy_j: Callable[[], float] | None = None  # this GPU's counter, joules
    energy_start_j: float = 0.0

    @classmethod
    def start(cls, device: torch.device, world_size: int) -> UsageMeter:
        power, source = nominal_power(device)
        reader = nvml_energy_reader(device) if device.type == "cuda" else None
        meter = cls(world_size, power, source, time.perf_counter(), reader)
        if reader is not None:
            meter.energy_start_j = reader()
        return meter

    def report(self, method: CarbonMethod | None = None) -> dict:
        """accelerator_hours, energy_kwh (facility: with PUE), tco2eq, the power per device
        and where it comes from."""
        seconds = time.perf_counter() - self.started
        hours = self.world_size * seconds / 3600
        power, source = self.nominal_power_w, self.nominal_source
        if self.energy_j is not None and seconds > 0:
            power = (self.energy_j() - self.energy_start_j) / seconds
            source = "nvml: rank 0's GPU energy counter, times the world size"
        base = method or CarbonMethod()
        fp = footprint(hours, CarbonMethod(power, base.pue, base.kg_co2_per_kwh))
        return {
            "accelerator_hours": hours,
            "energy_kwh": fp.energy_kwh,
            "tco2eq": fp.tco2eq,
            "power_w": power,
            "power_source": source,
            "pue": base.pue,
            "kg_co2_per_kwh": base.kg_co2_per_kwh,
        }


def nominal_power(device: torch.device) -> tuple[float, str]:
    """(watts per device, a sentence saying it is nominal and why this figure)."""
    if device.type != "cuda":
        watts = ACCELERATORS["cpu"].nominal_power_w
        return watts, f"nominal: {watts:.0f} W per CPU process (assumed, not measured)"
    name = torch.cuda.get_device_name(device)
    row = accelerator_for_device_name(name)
    if row is None:
        return PAPER_GPU_POWER_W, (
            f"nominal: {PAPER_GPU_POWER_W:.0f} W, the paper's {PAPER_GPU} figure ({name} is "
            "not in training/planning/hardware.py)"
        )
    return row.nominal_power_w, f"nominal: {row.nominal_power_w:.0f} W board power ({name})"


def nvml_energy_reader(device: torch.device) -> Callable[[], float] | None:
    """A function returning the GPU's cumulative energy in joules, or None where NVML, or the
    counter (Volta and later), is not available."""
    try:
        import pynvml

        pynvml.nvmlInit()
        index = torch.cuda._get_nvml_device_index(device)
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # millijoules; raises if unsupported
    except Exception:  # noqa: BLE001 (no NVML of any kind: fall back to nominal power)
        return None
    return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000
