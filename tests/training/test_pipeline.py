from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from crystalgraph import (
    KNOWN_TARGETS,
    CGCNNConfig,
    GraphConfig,
    PackedGraphs,
    SRCGCNNConfig,
    build_model,
    load_exported,
    predict_graphs,
)
from training.cli import main as cli
from training.dataset import read_dataset
from training.graph_cache import CachedError, GraphCache
from training.pipeline import prepare, target_labels, tune_metal_threshold
from training.split import make_split
from training.trainer import TrainConfig, Trainer, _lr_factor, hardware_summary, with_labels

EF = KNOWN_TARGETS["formation_energy_per_atom"]


def _rock_salts(folder, n: int = 24):
    """Rock-salt crystals with a made-up label that depends on the lattice constant."""
    (folder / "cifs").mkdir(parents=True)
    pairs = [("Na", "Cl"), ("K", "Br"), ("Mg", "O"), ("Li", "F"), ("Ca", "S"), ("Ba", "Se")]
    rows = []
    for i in range(n):
        a = 4.2 + 0.08 * i
        s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(pairs[i % 6]), [[0, 0, 0], [0.5, 0.5, 0.5]])
        (folder / "cifs" / f"x-{i}.cif").write_text(str(CifWriter(s)))
        rows.append((f"x-{i}", -3.0 + 0.4 * (a - 4.2), float(i % 3)))
    return rows


def test_labels_csv_and_id_prop_csv(tmp_path):
    rows = _rock_salts(tmp_path / "a", 6)
    (tmp_path / "a" / "labels.csv").write_text(
        "material_id,formation_energy_per_atom,band_gap\n" + "".join(f"{i},{e},{g}\n" for i, e, g in rows)
    )
    ds = read_dataset(tmp_path / "a")
    assert ds.targets == ["formation_energy_per_atom", "band_gap"] and ds.labels.shape == (6, 2)
    assert read_dataset(tmp_path / "a", ["band_gap"]).labels[:, 0].tolist() == [g for *_, g in rows]
    # classic CGCNN layout: CIFs next to a header-less id_prop.csv
    b = tmp_path / "b"
    b.mkdir()
    for i, *_ in rows:
        (b / f"{i}.cif").write_bytes((tmp_path / "a" / "cifs" / f"{i}.cif").read_bytes())
    (b / "id_prop.csv").write_text("".join(f"{i},{e}\n" for i, e, _ in rows))
    ds = read_dataset(b)
    assert ds.targets == ["target"] and ds.labels[:, 0].tolist() == [e for _, e, _ in rows]
    with pytest.raises(KeyError):
        read_dataset(tmp_path / "a", ["nope"])


def test_graph_cache_parses_each_content_once(tmp_path):
    _rock_salts(tmp_path / "d", 4)
    paths = sorted((tmp_path / "d" / "cifs").iterdir())
    bad = tmp_path / "d" / "bad.cif"
    bad.write_text("not a cif")
    cache = GraphCache(GraphConfig(), tmp_path / "cache", workers=1)
    first, keys = cache.graphs(paths + [bad], progress=False)
    assert isinstance(first[-1], CachedError) and first[-1].code == "invalid_cif"
    chunks = sorted(cache.folder.glob("chunk-*.pt"))
    assert len(chunks) == 1
    # a renamed copy and a fresh cache object: served from disk, nothing parsed, no new chunk
    copy = tmp_path / "renamed.cif"
    copy.write_bytes(paths[0].read_bytes())
    again, _ = GraphCache(GraphConfig(), tmp_path / "cache", workers=1).graphs([copy, *paths], progress=False)
    assert sorted(cache.folder.glob("chunk-*.pt")) == chunks
    assert torch.equal(again[0].edge_dist, first[0].edge_dist)
    # other graph settings: another cache folder
    assert GraphCache(GraphConfig(cutoff=6.0), tmp_path / "cache").folder != cache.folder


def test_split_is_seeded_and_order_independent():
    ids = [f"mp-{i}" for i in range(1000)]
    a = make_split(ids, seed=42)
    assert a == make_split(ids[::-1], seed=42)
    assert a != make_split(ids, seed=43)
    assert [len(a[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    assert not set(a["train"]) & set(a["test"])


def _straight_and_resumed(tmp_path, build, graphs, config):
    """The same run twice: straight through, and stopped after 2 epochs then resumed by a new Trainer."""

    def trainer(run_dir):
        torch.manual_seed(0)
        return Trainer(build(), graphs[:18], graphs[18:], config, run_dir)

    straight = trainer(tmp_path / "straight")
    straight.fit(progress=False, log=lambda m: None)
    trainer(tmp_path / "resumed").fit(progress=False, log=lambda m: None, stop_after=2)
    second = trainer(tmp_path / "resumed")
    assert second.resume() and second.epoch == 2
    second.fit(progress=False, log=lambda m: None)
    return straight, second


def test_resume_continues_exactly_where_it_stopped(tmp_path, labelled):
    prepared = labelled
    graphs = with_labels([prepared.graphs[i] for i in prepared.data.ids], prepared.data.labels[:, :1])
    config = TrainConfig(epochs=4, batch_size=8, lr=3e-3)
    straight, second = _straight_and_resumed(
        tmp_path, lambda: build_model(SRCGCNNConfig(targets=(EF,), atom_fea_len=16, h_fea_len=16)), graphs, config
    )
    assert second.epoch == 4 and len(second.history) == 4
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[k], v)


def test_hardware_summary_names_each_device_a_run_moved_through():
    cpu, gpu = "x86_64 CPU, 1 thread", "NVIDIA H200 (CUDA)"
    rows = [{"epoch": e, "seconds": 60.0, "hardware": cpu} for e in (1, 2, 3)]
    assert hardware_summary(rows, "elsewhere") == cpu
    rows += [{"epoch": e, "seconds": 6.0, "hardware": gpu} for e in (4, 5)]
    assert hardware_summary(rows, "elsewhere") == f"{cpu}: epochs 1-3 (3 min); {gpu}: epochs 4-5 (0 min)"
    assert hardware_summary([{"epoch": 1, "seconds": 1.0}], "older run") == "older run"  # rows before rows said
    assert hardware_summary([], "not trained") == "not trained"


def test_a_run_resumed_on_other_hardware_says_so_in_its_checkpoint(tmp_path, labelled):
    """Trained 2 epochs on "machine A", resumed for 2 on "machine B": the checkpoint names both."""
    graphs = with_labels([labelled.graphs[i] for i in labelled.data.ids], labelled.data.labels[:, :1])
    config = TrainConfig(epochs=4, batch_size=8, lr=3e-3)

    def trainer(hw):
        model = build_model(CGCNNConfig(targets=(EF,), atom_fea_len=8, h_fea_len=8))
        return Trainer(model, graphs[:18], graphs[18:], config, tmp_path, {"training": {"hardware": hw}})

    trainer("machine A").fit(progress=False, log=lambda m: None, stop_after=2)
    second = trainer("machine B")
    assert second.resume()
    second.fit(progress=False, log=lambda m: None)
    assert [r["hardware"] for r in second.history] == ["machine A"] * 2 + ["machine B"] * 2
    assert second._checkpoint_metadata()["training"]["hardware"].startswith("machine A: epochs 1-2 (")
    assert "; machine B: epochs 3-4 (" in second._checkpoint_metadata()["training"]["hardware"]


def test_resume_refuses_another_recipe_but_not_another_way_of_running_it():
    """``compile`` (like the device) changes how a run executes, not what it learns.

    A compiled CPU run may continue eagerly on a GPU; any other field changed is another run.
    """
    saved = TrainConfig(epochs=150, lr=1e-3, ema_decay=0.999, compile=True).model_dump_json()
    assert TrainConfig(epochs=150, lr=1e-3, ema_decay=0.999, compile=False).same_recipe(saved)
    assert not TrainConfig(epochs=150, lr=2e-3, ema_decay=0.999, compile=True).same_recipe(saved)
    assert not TrainConfig(epochs=200, lr=1e-3, ema_decay=0.999).same_recipe(saved)


@pytest.mark.data
def test_short_real_training_beats_the_mean_predictor(mp_subset, tmp_path):
    """A few hundred real crystals, a few epochs: validation MAE well below the mean predictor's."""
    torch.manual_seed(0)
    cli(
        [
            "train",
            str(mp_subset),
            "--model",
            "cgcnn",
            "--targets",
            "formation_energy_per_atom",
            "--run-dir",
            str(tmp_path / "run"),
            "--epochs",
            "15",
            "--batch-size",
            "32",
            "--lr",
            "3e-3",
            "--loss",
            "l1",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--workers",
            "2",
            "--no-progress",
            "--export-to",
            str(tmp_path / "models"),
            "--name",
            "tiny-ef",
        ]
    )
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    ds = read_dataset(mp_subset, ["formation_energy_per_atom"])
    label = dict(zip(ds.ids, ds.labels[:, 0], strict=True))
    train_mean = np.mean([label[i] for i in split["train"]])
    mean_mae = np.mean([abs(label[i] - train_mean) for i in split["val"]])
    best_val = min(h["val_mae_formation_energy_per_atom"] for h in history)
    assert best_val < 0.5 * mean_mae, (best_val, mean_mae)
    # the export is complete and self-describing
    loaded = load_exported(tmp_path / "models" / "tiny-ef" / "1")
    meta = loaded.metadata
    assert meta["dataset"]["n_train"] == len(split["train"]) and meta["dataset"]["split_seed"] == 42
    assert meta["metrics"]["test"]["formation_energy_per_atom"]["n"] == len(split["test"])
    assert meta["training"]["best_epoch"] >= 1 and "O" in meta["elements"]
    assert {"torch", "pymatgen"} <= set(meta["library_versions"])
    for name in ("test_predictions.csv", "learning_curve.png", "parity_test_formation_energy_per_atom.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_cli_trains_multi_task_from_id_prop_folder_and_evaluates(tmp_path, capsys):
    rows = _rock_salts(tmp_path / "d", 24)
    (tmp_path / "d" / "labels.csv").write_text(
        "material_id,formation_energy_per_atom,band_gap\n" + "".join(f"{i},{e},{g}\n" for i, e, g in rows)
    )
    common = ["--cache-dir", str(tmp_path / "cache"), "--workers", "1"]
    cli(
        [
            "train",
            str(tmp_path / "d"),
            "--model",
            "sr-cgcnn",
            "--targets",
            "formation_energy_per_atom",
            "band_gap",
            "--run-dir",
            str(tmp_path / "run"),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--no-progress",
            "--atom-fea-len",
            "16",
            "--export-to",
            str(tmp_path / "models"),
            "--name",
            "mt",
            *common,
        ]
    )
    model = load_exported(tmp_path / "models" / "mt" / "1").model
    assert [t.name for t in model.config.targets] == ["formation_energy_per_atom", "band_gap"]
    assert isinstance(model.config, SRCGCNNConfig) and not isinstance(model.config, CGCNNConfig)
    capsys.readouterr()
    cli(
        [
            "evaluate",
            str(tmp_path / "models" / "mt" / "1"),
            str(tmp_path / "d"),
            "--split",
            str(tmp_path / "run" / "split.json"),
            "--out",
            str(tmp_path / "eval"),
            *common,
        ]
    )
    metrics = json.loads(capsys.readouterr().out)
    assert {"formation_energy_per_atom", "band_gap", "band_gap[label=0]"} <= set(metrics)
    assert (tmp_path / "eval" / "test_predictions.csv").is_file()


def _labelled(tmp_path, n: int = 24):
    rows = _rock_salts(tmp_path / "d", n)
    (tmp_path / "d" / "labels.csv").write_text(
        "material_id,formation_energy_per_atom,band_gap\n" + "".join(f"{i},{e},{g}\n" for i, e, g in rows)
    )
    return prepare(
        tmp_path / "d", ["formation_energy_per_atom", "band_gap"], tmp_path / "cache", workers=1, progress=False
    )


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """24 rock salts with formation energy and band gap, prepared once for the module.

    ``prepare`` parses in a spawned process pool: a few CPU seconds each time, for 24 tiny files.
    The tests read it and never change it.
    """
    return _labelled(tmp_path_factory.mktemp("labelled"))


MT = tuple(KNOWN_TARGETS[t] for t in ("formation_energy_per_atom", "band_gap", "p_metal"))


def test_metal_probability_labels_come_from_the_band_gap(labelled):
    prepared = labelled
    labels = target_labels(prepared.data, MT)
    gap = prepared.data.labels[:, 1]
    np.testing.assert_array_equal(labels[:, 2], (gap == 0).astype(float))
    np.testing.assert_array_equal(labels[:, :2], prepared.data.labels)


def test_ema_warmup_multitask_resume_is_exact(tmp_path, labelled):
    """The v3 recipe (warm-up, EMA, a metal head) resumes bit-identically, EMA weights included."""
    prepared = labelled
    graphs = with_labels([prepared.graphs[i] for i in prepared.data.ids], target_labels(prepared.data, MT))
    config = TrainConfig(epochs=4, batch_size=8, lr=3e-3, loss="l1", warmup_epochs=1, ema_decay=0.9)
    straight, second = _straight_and_resumed(
        tmp_path, lambda: build_model(CGCNNConfig(targets=MT, atom_fea_len=16, h_fea_len=16)), graphs, config
    )
    for k, v in straight.eval_model.state_dict().items():
        torch.testing.assert_close(second.eval_model.state_dict()[k], v, rtol=0, atol=0)
    # the averaged weights are not the raw ones, and they are what best.pt holds
    raw, avg = straight.model.state_dict(), straight.eval_model.state_dict()
    assert not torch.equal(raw["embedding.weight"], avg["embedding.weight"])
    assert "val_error_p_metal" in straight.history[-1] and "val_mae_band_gap" in straight.history[-1]


def test_learning_rate_warms_up_then_decays():
    config = TrainConfig(epochs=10, lr=1e-3, warmup_epochs=2, min_lr_ratio=0.01)
    f = [_lr_factor(s, 100, config) for s in range(0, 1001, 50)]
    assert f[0] == pytest.approx(0.1) and f[4] == pytest.approx(1.0)  # step 200: warm-up done
    assert all(a < b for a, b in zip(f[:4], f[1:5], strict=True))  # rising
    assert all(a >= b for a, b in zip(f[4:-1], f[5:], strict=True)) and f[-1] == pytest.approx(0.01)


@pytest.mark.slow  # two torch.compile runs: about a minute
def test_compiled_training_matches_eager_within_tolerance(tmp_path, labelled):
    """``compile=True`` fuses and reorders float operations: losses agree to 1e-4 relative, not bitwise."""
    prepared = labelled
    graphs = with_labels([prepared.graphs[i] for i in prepared.data.ids], prepared.data.labels)
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = build_model(SRCGCNNConfig(targets=MT[:2], atom_fea_len=16, h_fea_len=16))
        config = TrainConfig(epochs=2, batch_size=8, lr=1e-3, loss="l1", compile=compiled)
        t = Trainer(model, graphs[:18], graphs[18:], config, tmp_path / f"c{compiled}")
        losses[compiled] = [h["train_loss"] for h in t.fit(progress=False, log=lambda m: None)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


def test_bf16_training_runs_the_convolutions_in_bfloat16_and_evaluates_in_float32(tmp_path, labelled):
    """``bf16=True``: the losses follow float32 training to bfloat16's precision, the rest stays float32.

    The weights, the EMA copy, the validation pass and the node state are float32; only the
    convolutions' messages in the training forward are bfloat16 (a batch norm's input shows it).
    """
    prepared = labelled
    graphs = with_labels([prepared.graphs[i] for i in prepared.data.ids], prepared.data.labels)
    losses, trainers = {}, {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = build_model(CGCNNConfig(targets=MT[:2], atom_fea_len=16, h_fea_len=16))
        config = TrainConfig(epochs=2, batch_size=8, lr=1e-3, loss="l1", ema_decay=0.99, bf16=bf16)
        trainers[bf16] = t = Trainer(model, graphs[:18], graphs[18:], config, tmp_path / f"b{bf16}")
        losses[bf16] = [h["train_loss"] for h in t.fit(progress=False, log=lambda m: None)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=0.05)
    assert losses[True] != losses[False]  # bfloat16 did run
    t = trainers[True]
    assert t.model.train_autocast is torch.bfloat16 and t.eval_model.train_autocast is None
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    seen = []
    bn = next(m for m in t.model.convs.modules() if isinstance(m, torch.nn.BatchNorm1d))
    hook = bn.register_forward_hook(lambda m, i, out: seen.append(i[0].dtype))
    inputs, _ = t.packed_train.batch(list(range(8)))
    t.model.train()(*inputs)
    t.model.eval()(*inputs)
    hook.remove()
    assert seen == [torch.bfloat16, torch.float32]  # the messages: bfloat16 in training mode only
    assert t.model.train()(*inputs).dtype == torch.float32  # node state, pooling and heads: float32
    assert not TrainConfig(bf16=True).same_recipe(TrainConfig().model_dump_json())  # not a way of running: a recipe


def test_metal_threshold_is_tuned_on_validation_and_gates_the_gap(labelled):
    prepared = labelled
    ids = prepared.data.ids
    torch.manual_seed(0)
    model = build_model(CGCNNConfig(targets=MT, atom_fea_len=16, h_fea_len=16)).eval()
    labels = target_labels(prepared.data, MT)
    th = tune_metal_threshold(model, [prepared.graphs[i] for i in ids], labels)
    assert 0.05 <= th <= 0.95 and float(model.metal_threshold) == pytest.approx(th)
    pred = predict_graphs(model, [prepared.graphs[i] for i in ids])
    gated = pred[:, 2] > th
    assert (pred[gated, 1] == 0).all()
    assert ((pred[:, 2] >= 0) & (pred[:, 2] <= 1)).all()


def test_a_snapshot_seeds_an_empty_run_folder_only(tmp_path):
    """``make train-snapshot`` copies a run's resume state; ``train`` starts from it when its folder is empty."""
    from training.protocol import _seed_from_snapshot, main

    runs, snaps = tmp_path / "runs", tmp_path / "snaps"
    run = runs / "cgcnn-mp-multitask"
    run.mkdir(parents=True)
    for name, text in (("last.pt", "L"), ("best.pt", "B"), ("history.jsonl", "{}\n")):
        (run / name).write_text(text)
    main(["snapshot", "--runs-dir", str(runs), "--snapshots", str(snaps), "--only", "cgcnn-mp-multitask"])
    snap = snaps / "cgcnn-mp-multitask"
    assert sorted(p.name for p in snap.iterdir()) == ["best.pt", "history.jsonl", "last.pt"]
    fresh = tmp_path / "elsewhere" / "cgcnn-mp-multitask"
    assert _seed_from_snapshot(snap, fresh) and (fresh / "last.pt").read_text() == "L"
    (fresh / "last.pt").write_text("newer")
    assert not _seed_from_snapshot(snap, fresh) and (fresh / "last.pt").read_text() == "newer"  # never overwritten


def test_train_leaves_a_shipped_model_alone(tmp_path, capsys):
    """A run whose model folder is in ``models/`` is neither trained nor exported again (no data is read)."""
    from training.protocol import main

    shipped = tmp_path / "models" / "sr-cgcnn-mp-multitask" / "1"
    shipped.mkdir(parents=True)
    (shipped / "manifest.json").write_text("{}")
    main(["train", "--data", str(tmp_path / "no-data"), "--models", str(tmp_path / "models"),
          "--runs-dir", str(tmp_path / "runs"), "--only", "sr-cgcnn-mp-multitask"])  # fmt: skip
    assert "not trained or exported again" in capsys.readouterr().out
    assert (shipped / "manifest.json").read_text() == "{}" and not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_asking_for_cuda_without_one_is_a_clear_error(capsys):
    from training.pipeline import resolve_training_device

    assert resolve_training_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_training_device("cuda")
    # the commands refuse it as a usage error, before reading any data
    from training.protocol import main as protocol

    for command in (
        lambda: cli(["train", "/no/such/data", "--run-dir", "/no/such/run", "--device", "cuda"]),
        lambda: protocol(["train", "--data", "/no/such/data", "--device", "cuda"]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            command()
        assert exit_info.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_train_only_then_export_where_the_models_live(tmp_path, capsys):
    """``--train-only`` (a borrowed GPU machine) leaves a finished run; ``train`` without it evaluates and exports."""
    from training.protocol import main

    rows = _rock_salts(tmp_path / "d", 24)
    (tmp_path / "d" / "labels.csv").write_text(
        "material_id,formation_energy_per_atom,band_gap\n" + "".join(f"{i},{e},{g}\n" for i, e, g in rows)
    )
    args = ["train", "--data", str(tmp_path / "d"), "--models", str(tmp_path / "models"),
            "--runs-dir", str(tmp_path / "runs"), "--snapshots", str(tmp_path / "snaps"),
            "--only", "cgcnn-mp-formation-energy", "--epochs", "2", "--workers", "1", "--no-progress",
            "--device", "cpu", "--version", "3"]  # fmt: skip
    main([*args, "--train-only"])
    run = tmp_path / "runs" / "cgcnn-mp-formation-energy"
    assert "not evaluated or exported (--train-only)" in capsys.readouterr().out
    assert (run / "best.pt").is_file() and not (run / "metrics.json").exists()
    assert not (tmp_path / "models").exists()
    history = (run / "history.jsonl").read_text()
    main(args)  # the run is finished: no epoch more, then the test split is read and the model exported
    assert (run / "history.jsonl").read_text() == history
    loaded = load_exported(tmp_path / "models" / "cgcnn-mp-formation-energy" / "3")
    assert loaded.metadata["training"]["epochs"] == 2 and "test" in loaded.metadata["metrics"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu_and_resumes_on_the_cpu(tmp_path):
    """The GPU path of the trainer, and a run moving between devices (``last.pt`` written on the GPU)."""
    rows = _rock_salts(tmp_path / "d", 24)
    (tmp_path / "d" / "labels.csv").write_text(
        "material_id,formation_energy_per_atom,band_gap\n" + "".join(f"{i},{e},{g}\n" for i, e, g in rows)
    )
    prepared = prepare(tmp_path / "d", ["formation_energy_per_atom", "band_gap"], tmp_path / "c", 1, progress=False)
    graphs = with_labels([prepared.graphs[i] for i in prepared.data.ids], target_labels(prepared.data, MT))
    config = TrainConfig(epochs=4, batch_size=8, lr=3e-3, loss="l1", warmup_epochs=1, ema_decay=0.9)

    def trainer(run_dir, device):
        torch.manual_seed(0)
        model = build_model(CGCNNConfig(targets=MT, atom_fea_len=16, h_fea_len=16))
        return Trainer(model, graphs[:18], graphs[18:], config, run_dir, device=device)

    cpu = trainer(tmp_path / "cpu", "cpu")
    cpu.fit(progress=False, log=lambda m: None)
    gpu = trainer(tmp_path / "moved", "cuda")
    assert next(gpu.model.parameters()).is_cuda and next(gpu.eval_model.parameters()).is_cuda
    gpu.fit(progress=False, log=lambda m: None, stop_after=2)
    # the same numbers up to float summation order (scatter on the GPU)
    np.testing.assert_allclose(
        [h["train_loss"] for h in gpu.history], [h["train_loss"] for h in cpu.history[:2]], rtol=1e-4
    )
    moved = trainer(tmp_path / "moved", "cpu")  # last.pt written on the GPU, resumed on the CPU
    assert moved.resume() and moved.epoch == 2
    assert all(not t.is_cuda for st in moved.optimizer.state.values() for t in st.values())
    assert int(moved.ema.n_averaged) == 2 * (18 // 8)  # the averaged weights came along
    moved.fit(progress=False, log=lambda m: None)
    # a resumed run follows the CPU run: the weights drift apart by float rounding (a few 1e-3 after
    # four epochs of a 24-crystal toy at lr 3e-3, measured on an H200), the losses stay together
    np.testing.assert_allclose(
        [h["train_loss"] for h in moved.history], [h["train_loss"] for h in cpu.history], rtol=1e-3
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_training_follows_float32_on_the_cpu(tmp_path, labelled):
    """``bf16`` on a GPU (autocast to bfloat16 on CUDA): losses within bfloat16's precision of float32."""
    graphs = with_labels([labelled.graphs[i] for i in labelled.data.ids], labelled.data.labels)
    losses = {}
    for device, bf16 in (("cpu", False), ("cuda", True)):
        torch.manual_seed(0)
        model = build_model(CGCNNConfig(targets=MT[:2], atom_fea_len=16, h_fea_len=16))
        config = TrainConfig(epochs=2, batch_size=8, lr=1e-3, loss="l1", bf16=bf16)
        t = Trainer(model, graphs[:18], graphs[18:], config, tmp_path / device, device=device)
        losses[device] = [h["train_loss"] for h in t.fit(progress=False, log=lambda m: None)]
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=0.05)


def test_target_weights_scale_each_regression_loss_and_name_real_targets(tmp_path, labelled):
    """``--target-weight formation_energy_per_atom=2``: that target's loss counts twice in the mean."""
    from training.trainer import _loss

    graphs = with_labels([labelled.graphs[i] for i in labelled.data.ids], target_labels(labelled.data, MT))
    torch.manual_seed(0)
    model = build_model(CGCNNConfig(targets=MT, atom_fea_len=8, h_fea_len=8))
    Trainer(model, graphs[:18], graphs[18:], TrainConfig(), tmp_path / "run")  # sets the target normaliser
    inputs, y = PackedGraphs(graphs, torch.cat([g.y for g in graphs])).batch(list(range(len(graphs))))
    out = model.eval()(*inputs)
    plain = _loss(out, y, model, TrainConfig(loss="l1"))
    weighted = _loss(out, y, model, TrainConfig(loss="l1", target_weights={"formation_energy_per_atom": 2.0}))
    ef = (out[:, 0] - (y[:, 0] - model.target_mean[0]) / model.target_std[0]).abs().mean()
    torch.testing.assert_close(weighted - plain, ef / 3)  # one more formation-energy loss, in a mean of three

    with pytest.raises(ValueError, match=r"target weights for \['band_gaps'\]"):
        Trainer(model, graphs[:18], graphs[18:], TrainConfig(target_weights={"band_gaps": 2}), tmp_path / "run")
    with pytest.raises(ValueError, match="positive"):
        TrainConfig(target_weights={"band_gap": -1})


def test_the_target_weight_option_reaches_the_recipe():
    import argparse

    from training.trainer import add_recipe_arguments

    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser, epochs=1, batch_size=8, loss="l1")
    args = parser.parse_args(["--target-weight", "formation_energy_per_atom=3", "--target-weight", "band_gap=0.5"])
    assert TrainConfig.from_args(args).target_weights == {"formation_energy_per_atom": 3.0, "band_gap": 0.5}
    assert TrainConfig.from_args(parser.parse_args([])).target_weights == {}
