"""The compute and carbon planner (training/planning/compute.py, `llamapipe plan run` and
`plan table15`) against the paper's own numbers: Table 15's LLaMA rows by its method (400 W,
PUE 1.1, 0.385 kg CO2eq/kWh) and section 2.4's 65B arithmetic (380 tokens/s/GPU, 1.4T tokens,
2048 A100s, about 21 days); the throughput this project measured; the thesis as numbers; and
what a finished training run records about its own consumption (training/planning/usage.py).
"""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from small_run import small_run
from train_shards import write_shards

from model import LlamaConfig
from pipelines.cli import main
from training.config import TrainConfig
from training.planning.carbon import CarbonMethod, footprint
from training.planning.compute import (
    NoThroughput,
    RunSpec,
    inference_flops_per_token,
    plan_run,
    size_choices,
)
from training.planning.paper import SECTION_2_4, TABLE_15
from training.planning.tables import parse_count
from training.planning.usage import UsageMeter
from training.train import train


def test_table_15_by_the_papers_method():
    """GPU-hours x 0.4 kW x 1.1 is the MWh column and x 0.385 the tCO2eq column. The printed
    MWh are the results cut to whole MWh (65B: 449.8 printed 449), the tCO2eq rounded."""
    for row in TABLE_15:
        fp = footprint(row.gpu_hours, CarbonMethod(row.power_w))
        assert math.floor(fp.energy_mwh) == row.mwh, row
        assert round(fp.tco2eq) == row.tco2eq, row
    seven = footprint(82_432)
    assert round(seven.energy_mwh, 1) == 36.3 and round(seven.tco2eq, 1) == 14.0


def test_the_65b_arithmetic_of_section_2_4():
    claim = SECTION_2_4
    plan = plan_run(
        RunSpec(claim.model, claim.tokens, claim.gpus, claim.gpu, claim.tokens_per_gpu_s)
    )
    assert round(plan.days, 1) == 20.8 and abs(plan.days - claim.days) < 0.5
    assert round(plan.gpu_hours) == 1_023_392  # 1.4e12 / 380 / 3600
    table_15 = next(r for r in TABLE_15 if r.model == "65B")
    assert abs(plan.gpu_hours / table_15.gpu_hours - 1) < 0.002  # 0.1% from the printed row
    assert plan.steps == 333_787 == TrainConfig(model="65B").resolve().max_steps
    config = LlamaConfig.preset("65B")
    assert plan.flops_6nd == 6 * config.num_params(include_embedding=False) * claim.tokens
    assert plan.flops_attention == 12 * 80 * 8192 * 2048 * claim.tokens
    assert plan.flops == config.flops_per_token(2048) * claim.tokens
    assert 0.49 < plan.mfu < 0.50  # of the A100's 312 TFLOP/s
    assert round(plan.footprint.energy_mwh) == 450 and round(plan.footprint.tco2eq) == 173


def test_without_a_stated_throughput_the_projects_measurement_or_a_refusal():
    plan = plan_run(RunSpec("1.36B", 27_300_000_000, 8, "h200"))
    assert plan.throughput.tokens_per_gpu_s == 58_866  # ac_selective_cudnn, the fastest
    assert plan.throughput.source.startswith("measured by this project's benchmark")
    assert "train_gpu_h200.json" in plan.throughput.source
    assert plan.footprint.method.power_w == 700  # the H200's rated power, not the A100's
    with pytest.raises(NoThroughput, match="--tokens-per-gpu-second"):
        plan_run(RunSpec("65B", 1_400_000_000_000, 2048, "a100-80gb"))


def test_the_thesis_as_numbers():
    # Inference: 2 FLOPs per matmul weight, plus attention over a full 2048 context.
    seven = LlamaConfig.preset("7B")
    assert inference_flops_per_token(seven, 2048) == (
        2 * 6_607_343_616 + 4 * 32 * 4096 * 2048
    )  # fmt: skip
    choices = {c.model: c for c in size_choices()}
    for c in choices.values():
        assert c.budget_flops == pytest.approx(6 * c.optimal_params * c.optimal_tokens)
        assert c.optimal_tokens == pytest.approx(20 * c.optimal_params)
    # 7B on 1T tokens: ~148 tokens per parameter; the same budget's compute-optimal model is
    # ~18B on ~370B tokens, 2.7 times the inference cost per token. 65B is near the optimum.
    assert round(choices["7B"].tokens_per_param) == 148
    assert 18e9 < choices["7B"].optimal_params < 19e9
    assert round(choices["7B"].inference_saving, 1) == 2.7
    assert 0.95 < choices["65B"].inference_saving < 1.1


def test_counts_parse_exactly():
    assert parse_count("1.4T") == 1_400_000_000_000 and parse_count("4M") == 4_000_000
    assert parse_count("4194304") == 4_194_304 and parse_count("300b") == 300_000_000_000
    for bad in ("1.5", "x", "-3B", ""):
        with pytest.raises(ValueError):
            parse_count(bad)


def test_cli(capsys):
    argv = ["plan", "run", "--model", "65B", "--tokens", "1.4T", "--gpus", "2048"]
    argv += ["--gpu", "a100-80gb", "--tokens-per-gpu-second", "380"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for text in ("333,787", "1,023,392", "20.8", "450.3 MWh", "173.4 tCO2eq", "49.5%"):
        assert text in out, text
    assert "7B @ 1T" in out and "18.4B x 367B" in out  # the thesis table
    assert main(["plan", "run", "--model", "65B"]) == 2
    assert "pass --tokens-per-gpu-second" in capsys.readouterr().err
    assert main(["plan", "table15"]) == 0
    out = capsys.readouterr().out
    assert "65B    1,022,362  449.8    449   173.2    173" in out


def test_a_usage_meter_reads_energy_when_nvml_can():
    """With an energy counter (NVML), the power is what it measured over the run's wall time."""
    hour_ago = time.perf_counter() - 3600
    counter = iter([0.0, 300 * 3600.0])  # joules: 300 W for the hour
    meter = UsageMeter(8, 400.0, "nominal", hour_ago, lambda: next(counter))
    meter.energy_start_j = next(counter)
    report = meter.report()
    assert report["power_source"].startswith("nvml")
    assert report["power_w"] == pytest.approx(300, rel=1e-3)
    assert report["accelerator_hours"] == pytest.approx(8, rel=1e-3)
    assert report["energy_kwh"] == pytest.approx(8 * 0.3 * 1.1, rel=1e-3)


def test_a_training_run_records_its_gpu_hours_energy_and_carbon(tmp_path):
    """On a CPU the power is nominal and says so; energy and carbon follow the paper's method."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = write_shards(tmp_path / "shards", train_tokens=20_000, validation_tokens=2_000)
        result = train(small_run(data, tmp_path / "run", max_steps=2, warmup_steps=1))
    finally:
        torch.set_num_threads(threads)
    assert result["status"] == "completed"
    assert result["power_source"].startswith("nominal: 100 W per CPU process")
    hours = result["accelerator_hours"]
    assert 0 < hours < 0.1
    assert result["energy_kwh"] == pytest.approx(hours * 0.1 * 1.1)
    assert result["tco2eq"] == pytest.approx(result["energy_kwh"] * 0.385 / 1000)
    written = json.loads((tmp_path / "run" / "result.json").read_text())
    assert written["tco2eq"] == result["tco2eq"]
