"""Energy and carbon of accelerator time, by the paper's method (section 6.1, Table 15).

    energy (kWh) = accelerator-hours x power (kW) x PUE
    carbon (t CO2eq) = energy (MWh) x carbon intensity (t/MWh, the same number as kg/kWh)

The defaults are the paper's: 400 W per A100, PUE 1.1, 0.385 kg CO2eq/kWh (the US national
average the paper uses so that every model is compared as if trained in one data center). A
measured power (NVML) can replace the nominal one; the method stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.planning.paper import PAPER_GPU_POWER_W, PAPER_KG_CO2_PER_KWH, PAPER_PUE


@dataclass(frozen=True)
class CarbonMethod:
    """Power per accelerator, data-center overhead and grid intensity."""

    power_w: float = PAPER_GPU_POWER_W
    pue: float = PAPER_PUE
    kg_co2_per_kwh: float = PAPER_KG_CO2_PER_KWH


@dataclass(frozen=True)
class Footprint:
    """What `accelerator_hours` cost under a `CarbonMethod`."""

    accelerator_hours: float
    method: CarbonMethod

    @property
    def energy_kwh(self) -> float:
        """Facility energy: the accelerators' draw times the PUE."""
        return self.accelerator_hours * self.method.power_w / 1000 * self.method.pue

    @property
    def energy_mwh(self) -> float:
        return self.energy_kwh / 1000

    @property
    def tco2eq(self) -> float:
        return self.energy_kwh * self.method.kg_co2_per_kwh / 1000


def footprint(accelerator_hours: float, method: CarbonMethod | None = None) -> Footprint:
    return Footprint(accelerator_hours, method or CarbonMethod())
