"""The benchmark scripts run, and the sampling benchmark's baseline computes what the model computes."""

import torch
from repo_files import load_repo_module

from mssfs.model.unet import UNet, UNetConfig, WSConv2d


def _load(name):
    return load_repo_module("benchmarks", name)


def test_publication_net_same_values_with_published_kernels():
    speed = _load("sample_speed")
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_width=8, mults=(1, 2), res_blocks=1, attn_heads=2, attn_head_dim=8)).eval().requires_grad_(False)
    pub = speed.publication_net(net)
    assert any(type(m) is WSConv2d for m in net.modules())  # the original is untouched
    assert not any(type(m) is WSConv2d for m in pub.modules())
    x, t, s = torch.randn(5, 3, 16, 16), torch.randint(0, 300, (5,)), torch.rand(5, 1, 16, 16)
    torch.testing.assert_close(pub(x, t, s), net(x, t, s), atol=1e-5, rtol=1e-4)
    pub(x, t, s)
    assert all(getattr(m, "_ws_cache", None) is None for m in pub.modules() if isinstance(m, WSConv2d))
    from mssfs.model.unet import LinearAttention

    # the publication computes its linear attentions in the direct form; ours re-associates
    assert all(not m.reassociate for m in pub.modules() if isinstance(m, LinearAttention))
    assert all(m.reassociate for m in net.modules() if isinstance(m, LinearAttention))
    from mssfs.model.unet import ChannelNorm

    assert all(type(m) is ChannelNorm for m in net.modules() if isinstance(m, ChannelNorm))
    assert all(type(m) is not ChannelNorm for m in pub.modules() if isinstance(m, ChannelNorm))


def test_sample_speed_runs_on_a_tiny_schedule(tmp_path, capsys):
    speed = _load("sample_speed")
    sched = tmp_path / "tiny.yaml"
    sched.write_text("name: tiny\nnum_steps: 3\nfuse_last: 1\nstages:\n  - {resolution: 32, lr: 1.0, restart_t: 299}\n")
    assert speed.main(["--schedule", str(sched), "--samples-list", "2", "--bf16", "--no-memory", "--reps", "1",
                       "--chunk", "4", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| 1", "| 2"))]
    # baseline, 1 and 2 with our kernels, 2 chunked, 1 and 2 bf16, then 1 and 2 on 2 workers in fp32 and bf16
    assert len(rows) == 10
    assert "| published | all | 1 |" in rows[0] and "1.00x" in rows[0]
    assert all("| <= 4 | 2 |" in row for row in rows[6:])


def test_sample_speed_measures_an_architecture_variant(tmp_path, capsys):
    speed = _load("sample_speed")
    sched = tmp_path / "tiny.yaml"
    sched.write_text("name: tiny\nnum_steps: 2\nfuse_last: 1\nstages:\n  - {resolution: 32, lr: 1.0, restart_t: 299}\n")
    assert speed.main(["--schedule", str(sched), "--samples-list", "2", "--reps", "1", "--chunk", "4",
                       "--linear-attn-from", "1", "--end-to-end"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "no linear attention below level 1" in line]
    assert len(rows) == 2 and all("| fp32 |" in r and "| <= 4 | 1 |" in r for r in rows)  # 1 and 2 samples
    assert all(float(r.rstrip(" |").rsplit("|", 1)[1]) > 0 for r in rows)  # measured end to end
    net = speed.load_net(None, torch.device("cpu"), 1)
    assert net.config.linear_attn_from == 1 and not any(n.startswith("down.0.attn.") for n, _ in net.named_parameters())


def test_the_baseline_has_the_publications_architecture():
    """Random-weight rows use the package weights' architecture; the publication loop always
    runs the publication's (linear attention at every level), whatever ships."""
    import dataclasses

    from mssfs.model.weights import DEFAULT_DIR, read_export_config

    speed = _load("sample_speed")
    cpu = torch.device("cpu")
    shipped = UNetConfig.from_dict(read_export_config(DEFAULT_DIR)["model"])
    assert speed.load_net(None, cpu).config == shipped
    lean = speed.load_net(None, cpu, 1)
    pub = speed.published_architecture(lean, cpu)
    assert pub.config == dataclasses.replace(lean.config, linear_attn_from=0)
    assert any(n.startswith("down.0.attn.") for n, _ in pub.named_parameters())
    full = speed.load_net(None, cpu, 0)
    assert speed.published_architecture(full, cpu) is full
    assert speed.variant_label(0) == "ours, published architecture"


def test_denoiser_kernels_prints_one_row_per_size(capsys):
    assert _load("denoiser_kernels").main(["--patches", "2,3", "--reps", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 2 ", "| 3 "))]
    assert len(rows) == 2 and all(row.count("x)") == 4 for row in rows)


def test_a_failing_graph_capture_drops_only_its_row(tmp_path, monkeypatch, capsys):
    import argparse

    speed = _load("sample_speed")
    sched = tmp_path / "tiny.yaml"
    sched.write_text("name: tiny\nnum_steps: 3\nfuse_last: 1\nstages:\n  - {resolution: 32, lr: 1.0, restart_t: 299}\n")
    real = speed._time_call

    def time_call(net, *a):
        if net.graphs is not None:
            raise RuntimeError("operation not permitted when stream is capturing")
        return real(net, *a)

    monkeypatch.setattr(speed, "_time_call", time_call)
    configs = [speed.Config(1, False, None, "published"), speed.Config(2, False, None, "ours"),
               speed.Config(2, False, None, "ours", 1, True)]
    args = argparse.Namespace(device="cpu", weights=None, schedule=str(sched), preset="paper", measure_res=None,
                              reps=1, iters=1, linear_attn_from=0)
    out = speed.measure(args, configs)
    assert len(configs) == 2 and not any(c.graphs for c in configs) and set(out) == set(configs)
    assert "capture FAILED, row dropped: RuntimeError" in capsys.readouterr().err


def test_a_failing_memory_probe_keeps_the_timings(tmp_path, monkeypatch, capsys):
    import subprocess

    speed = _load("sample_speed")
    sched = tmp_path / "tiny.yaml"
    sched.write_text("name: tiny\nnum_steps: 2\nfuse_last: 1\nstages:\n  - {resolution: 32, lr: 1.0, restart_t: 299}\n")
    calls = []

    def failing_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="Traceback ...\nRuntimeError: probe broke")

    monkeypatch.setattr(speed.subprocess, "run", failing_run)
    assert speed.main(["--schedule", str(sched), "--samples-list", "2", "--reps", "1"]) == 0
    out, err = capsys.readouterr()
    rows = [line for line in out.splitlines() if line.startswith(("| 1", "| 2"))]
    # baseline, 1, 2 and 2 in chunks: each row probed once, each probe failed
    assert len(rows) == len(calls) == 4
    assert all(row.rstrip(" |").endswith("nan") for row in rows)  # memory column empty, timings kept
    assert all(float(row.split("|")[7]) > 0 for row in rows)
    assert err.count("RuntimeError: probe broke") == 4


def test_train_throughput_table_checks_and_json(tmp_path, capsys):
    import json

    bench = _load("train_throughput")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: {base_width: 8, mults: [1, 2], res_blocks: 1, attn_heads: 1, attn_head_dim: 8, "
                   "time_sin_dim: 8, time_dim: 16}\n")
    out_json = tmp_path / "bench.json"
    assert bench.main(["--patches", "8", "--steps", "1", "--warmup", "1", "--config", str(cfg), "--json", str(out_json),
                       "--variants", "bf16 eager channels_last,bf16 cuda-graph"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "variant" not in line]
    # the eager loop of the precision asked for comes first
    assert [r.split("|")[1].strip() for r in rows] == ["bf16 eager", "bf16 eager channels_last", "bf16 cuda-graph"]
    assert all(r.count("|") == 7 for r in rows)
    assert "| 1.00x |" in rows[0] and rows[0].rstrip(" |").endswith("ok")
    saved = json.loads(out_json.read_text())["variants"]
    assert saved["bf16 eager channels_last"]["train_options"] == "--channels-last true"
    assert saved["bf16 eager channels_last"]["check"] == "ok" and saved["bf16 eager"]["first_loss"] > 0
    assert saved["bf16 cuda-graph"]["train_options"] == "--cuda-graph true"
    if not torch.cuda.is_available():
        assert "skipped: no CUDA" in rows[2] and saved["bf16 cuda-graph"] == {
            "skipped": "no CUDA", "train_options": "--cuda-graph true", "precision": "bf16"}
    assert bench.main(["--print-fastest", str(out_json)]) == 0
    fastest = capsys.readouterr().out.strip()
    assert fastest in ("--precision bf16", "--precision bf16 --channels-last true", "--precision bf16 --cuda-graph true")


def test_train_throughput_check_flags_a_diverging_variant():
    bench = _load("train_throughput")
    results = {"bf16 eager": {"first_loss": 1.0, "finite": True},
               "bf16 compile": {"first_loss": 1.5, "finite": True},
               "bf16 cuda-graph": {"first_loss": 1.01, "finite": True},
               "bf16 compile+cuda-graph": {"first_loss": 1.0, "finite": False}}
    assert bench.check("bf16 eager", results) == "ok"
    assert bench.check("bf16 compile", results).startswith("first loss 1.5")
    assert bench.check("bf16 cuda-graph", results) == "ok"
    assert bench.check("bf16 compile+cuda-graph", results) == "non-finite loss"
    for name, r in results.items():
        r.update(check=bench.check(name, results), patches_per_s={"bf16 eager": 10.0, "bf16 compile": 99.0}.get(name, 20.0),
                 precision="bf16", train_options=bench.train_options(bench.VARIANTS[name]))
    # the fastest that passed: not the diverging compile, not the non-finite compile+graph
    assert bench.fastest_options({"variants": results}) == "--precision bf16 --cuda-graph true"
    assert bench.fastest_options({"variants": {"bf16 compile": results["bf16 compile"]}}) == ""


def test_precision_speed_prints_both_precisions_and_the_auto_choice(capsys, monkeypatch):
    from mssfs.core import device

    bench = _load("precision_speed")
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(bench, "cpu_has_native_bf16", lambda: False)
    assert bench.main(["--patches", "2,3", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert "bfloat16 instructions: no; --precision auto takes fp32" in out
    rows = [line for line in out.splitlines() if line.startswith(("| 2 |", "| 3 |"))]
    assert len(rows) == 2
    for row in rows:  # fp32 s, bf16 s, ratio: positive numbers, ratio = bf16 / fp32 to rounding
        fp32, bf16, ratio = (float(c.strip().rstrip("x")) for c in row.strip("|").split("|")[1:])
        assert fp32 > 0 and bf16 > 0 and ratio > 0
