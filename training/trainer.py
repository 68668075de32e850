"""The training loop: AdamW, warm-up and cosine, weight averaging (EMA), early stopping, resume."""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch_geometric.data import Data
from tqdm import tqdm

from crystalgraph import CrystalGraphNet, PackedGraphs, predict_packed, save_checkpoint

__all__ = ["TrainConfig", "Trainer", "add_recipe_arguments", "hardware_summary", "with_labels"]


class TrainConfig(BaseModel):
    """Optimisation settings; saved with the run so that a resume uses the same ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    loss: Literal["mse", "l1", "huber"] = "mse"
    patience: int = Field(30, ge=1)
    seed: int = 0
    #: Linear warm-up of the learning rate from ``lr / 10`` over this many epochs (then cosine).
    warmup_epochs: int = Field(0, ge=0)
    #: Exponential moving average of the weights (per step; ``None``: off). Validation, early
    #: stopping and the exported checkpoint use the averaged weights.
    ema_decay: float | None = Field(None, gt=0, lt=1)
    #: Weight of the metal-classification loss (binary cross-entropy) against the regressions.
    classification_weight: float = Field(1.0, ge=0)
    #: Weight of each named regression target's loss (the others: 1); the loss is still the mean
    #: over targets, so ``{"formation_energy_per_atom": 2}`` gives formation energy half of a
    #: three-target model's gradient instead of a third.
    target_weights: dict[str, float] = Field(default_factory=dict)
    #: ``torch.compile`` the training forward (dynamic shapes): about 1.55x faster epochs on a CPU
    #: thread (``python -m bench --only training``). The float operations are fused and reordered, so
    #: losses agree with eager mode to a tolerance, not bit for bit: 1e-4 relative over two epochs of
    #: a small model (tested); the difference grows along a run (up to 2.5e-3 relative over one
    #: 4,096-crystal epoch of the default SR-CGCNN in the benchmark).
    compile: bool = False
    #: Train the convolutions in bfloat16 mixed precision (:attr:`CrystalGraphNet.train_autocast`):
    #: their matrix products and messages in bfloat16, the weights, optimiser, EMA, heads, loss and
    #: validation in float32. About 2.6x faster epochs on this machine's CPU (AMX); slower on a CPU
    #: without AVX512-BF16. Part of the recipe (it changes what the run computes beyond rounding order).
    bf16: bool = False

    #: How a run executes, not what it computes: a run may resume with them changed (a compiled
    #: CPU run continued eagerly on a GPU), like the device, which is not a field at all.
    EXECUTION_FIELDS: ClassVar[frozenset[str]] = frozenset({"compile"})

    @classmethod
    def recipe(cls, settings: dict) -> dict:
        """The settings that decide what a run learns: ``settings`` (a dump) without the execution fields."""
        return {k: v for k, v in settings.items() if k not in cls.EXECUTION_FIELDS}

    def same_recipe(self, saved_json: str) -> bool:
        """Whether a run saved with ``saved_json`` settings may resume with these ones."""
        saved = TrainConfig.model_validate_json(saved_json).model_dump()
        return self.recipe(saved) == self.recipe(self.model_dump())

    @classmethod
    def from_args(cls, args: object, **fixed: Any) -> TrainConfig:
        """The config a command line asks for: each field its parsed arguments hold, then ``fixed``.

        Args:
            args: Parsed arguments (an ``argparse.Namespace``); attributes named like a field
                (``batch_size`` from ``--batch-size``) set it, the other fields keep their defaults.
            fixed: Fields the command sets itself (``seed=0``), over the arguments.
        """
        given = {name: getattr(args, name) for name in cls.model_fields if hasattr(args, name)}
        return cls(**{**given, **fixed})

    @field_validator("target_weights")
    @classmethod
    def _positive_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        if any(not (w > 0 and math.isfinite(w)) for w in weights.values()):
            raise ValueError(f"target weights must be positive numbers: {weights}")
        return weights


class _NameWeights(argparse.Action):
    """``--target-weight NAME=W``, repeated: collects ``{NAME: W}`` (a :class:`TrainConfig` field as is)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        name, sep, weight = str(values).partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not (sep and name) or value is None:
            parser.error(f"{option_string}: expected NAME=WEIGHT, e.g. formation_energy_per_atom=2, not {values!r}")
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), name: value})


def add_recipe_arguments(parser: argparse.ArgumentParser, *, epochs: int, batch_size: int, loss: str) -> None:
    """The recipe's options (:class:`TrainConfig` fields but the seed), for both training commands."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--loss", choices=["mse", "l1", "huber"], default=loss)
    parser.add_argument("--patience", type=int, default=30, help="early stopping: epochs without validation gain")
    parser.add_argument("--warmup-epochs", type=int, default=0, help="linear learning-rate warm-up before the cosine")
    parser.add_argument("--ema-decay", type=float, default=None, help="average the weights (EMA, per step), e.g. 0.999")
    parser.add_argument("--classification-weight", type=float, default=1.0, help="weight of the metal-head loss")
    parser.add_argument(
        "--target-weight",
        dest="target_weights",
        action=_NameWeights,
        default={},
        metavar="NAME=WEIGHT",
        help="weight of a regression target's loss (others 1), e.g. formation_energy_per_atom=2",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward (~1.5x on CPU)")
    parser.add_argument(
        "--bf16", action="store_true", help="convolutions in bfloat16 mixed precision (~2.6x on a CPU with AMX)"
    )


def with_labels(graphs: list[Data], labels: np.ndarray) -> list[Data]:
    """Shallow copies of the graphs carrying ``y: [1, T]`` (the cached graphs stay untouched)."""
    y = torch.as_tensor(labels, dtype=torch.float32)
    return [
        Data(z=g.z, edge_index=g.edge_index, edge_dist=g.edge_dist, num_nodes=g.num_nodes, y=y[i : i + 1])
        for i, g in enumerate(graphs)
    ]


def _regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    mask = torch.isfinite(target)
    pred, target = pred[mask], target[mask]
    if pred.numel() == 0:
        return pred.sum()
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "huber":
        return F.huber_loss(pred, target, delta=1.0)
    return F.mse_loss(pred, target)


def _loss(out: torch.Tensor, y: torch.Tensor, model: CrystalGraphNet, config: TrainConfig) -> torch.Tensor:
    """The mean over targets of each target's loss.

    Regression targets: the configured loss on standardised targets (weighted by ``target_weights``);
    a metal probability: binary cross-entropy on its logit (weighted by ``classification_weight``).

    Shapes:
        ``out: [B, T]`` (normalised outputs), ``y: [B, T]`` (labels; NaN = missing) -> scalar.
    """
    losses = []
    for t, spec in enumerate(model.config.targets):
        if spec.is_probability:
            mask = torch.isfinite(y[:, t])
            losses.append(config.classification_weight * F.binary_cross_entropy_with_logits(out[mask, t], y[mask, t]))
        else:
            target = (y[:, t] - model.target_mean[t]) / model.target_std[t]
            weight = config.target_weights.get(spec.name, 1.0)
            losses.append(weight * _regression_loss(out[:, t], target, config.loss))
    return torch.stack(losses).mean()


def _lr_factor(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at a step: linear warm-up from 0.1, then cosine to ``min_lr_ratio``."""
    warm = config.warmup_epochs * steps_per_epoch
    if step < warm:
        return 0.1 + 0.9 * step / warm
    total = max(config.epochs * steps_per_epoch - warm, 1)
    progress = min((step - warm) / total, 1.0)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def hardware_summary(history: list[dict], fallback: str) -> str:
    """Where a run trained, from its per-epoch rows: the one device, or each in turn with its epochs.

    Args:
        history: The run's rows; each names its ``hardware`` (rows written before it did: ``fallback``).
        fallback: The hardware of rows that name none.

    Returns:
        ``"x86_64 CPU, 1 thread"``, or ``"x86_64 CPU, 1 thread: epochs 1-83 (149 min); NVIDIA H200
        (CUDA): epochs 84-150 (6 min)"`` for a run resumed elsewhere.
    """
    segments: list[list] = []  # [hardware, first epoch, last epoch, seconds]
    for row in history:
        hw = row.get("hardware", fallback)
        if segments and segments[-1][0] == hw:
            segments[-1][2], segments[-1][3] = row["epoch"], segments[-1][3] + row.get("seconds", 0.0)
        else:
            segments.append([hw, row["epoch"], row["epoch"], row.get("seconds", 0.0)])
    if len(segments) < 2:
        return segments[0][0] if segments else fallback
    return "; ".join(f"{hw}: epochs {a}-{b} ({s / 60:.0f} min)" for hw, a, b, s in segments)


class Trainer:
    """Train a model on labelled graphs; the run folder holds everything needed to resume.

    Run folder: ``last.pt`` (resume state, every epoch), ``best.pt`` (self-describing
    checkpoint of the best validation epoch), ``history.jsonl`` (one line per epoch).

    Args:
        model: A fresh model (its normaliser is set here from the training labels).
        train: Training graphs with ``y``.
        val: Validation graphs with ``y``.
        config: Optimisation settings.
        run_dir: The run folder.
        metadata: Extra metadata for the checkpoints (dataset, split, elements...).
        device: Where the model trains (``"cpu"``, ``"cuda"``). Not part of ``config``: a run
            started on a GPU resumes on a CPU and the other way round (``last.pt`` is loaded onto
            the CPU, then into the model wherever it is).
    """

    def __init__(
        self,
        model: CrystalGraphNet,
        train: list[Data],
        val: list[Data],
        config: TrainConfig,
        run_dir: Path,
        metadata: dict | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        regression = {spec.name for spec in model.config.targets if not spec.is_probability}
        if unknown := sorted(set(config.target_weights) - regression):
            raise ValueError(f"target weights for {unknown}: this model's regression targets are {sorted(regression)}")
        self.device = torch.device(device)
        model.to(self.device)
        self.model, self.train, self.val, self.config = model, train, val, config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metadata = dict(metadata or {})
        y = torch.cat([g.y for g in train])
        finite = torch.isfinite(y)
        mean = torch.stack([y[finite[:, t], t].mean() for t in range(y.shape[1])])
        std = torch.stack([y[finite[:, t], t].std() for t in range(y.shape[1])])
        for t, spec in enumerate(model.config.targets):
            if spec.is_probability:  # a logit: no normalisation
                mean[t], std[t] = 0.0, 1.0
        model.set_normalizer(mean, std)
        self.packed_train = PackedGraphs(train, y)
        self.packed_val = PackedGraphs(val)
        self.val_y = torch.cat([g.y for g in val]).numpy().astype(np.float64)
        self.steps_per_epoch = max(1, len(train) // config.batch_size)  # the last partial batch is dropped
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: _lr_factor(step, self.steps_per_epoch, config)
        )
        self.ema = (
            torch.optim.swa_utils.AveragedModel(
                model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
            )
            if config.ema_decay is not None
            else None
        )
        if config.bf16:  # after the EMA copy, which evaluates in float32 anyway (eval mode)
            model.train_autocast = torch.bfloat16
        if config.compile:
            model.compile(dynamic=True)  # in place: state_dict keys and the EMA copy are unaffected
        self.epoch = 0
        self.best_score = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.seconds = 0.0
        self.history: list[dict] = []

    # -- persistence ---------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "epoch": self.epoch,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "seconds": self.seconds,
            "history": json.dumps(self.history),
            "train_config": self.config.model_dump_json(),
            "torch_rng": torch.get_rng_state(),
        }

    def resume(self) -> bool:
        """Load ``last.pt`` if present; returns whether it did."""
        path = self.run_dir / "last.pt"
        if not path.is_file():
            return False
        state = torch.load(path, weights_only=True, map_location="cpu")
        if not self.config.same_recipe(state["train_config"]):
            raise ValueError(f"{path}: saved with other training settings; use a new run folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.best_score = state["epoch"], state["best_score"]
        self.best_epoch, self.bad_epochs, self.seconds = state["best_epoch"], state["bad_epochs"], state["seconds"]
        self.history = json.loads(state["history"])
        torch.set_rng_state(state["torch_rng"])
        return True

    def _save_last(self) -> None:
        tmp = self.run_dir / "last.pt.part"
        torch.save(self._state(), tmp)
        tmp.replace(self.run_dir / "last.pt")

    def _checkpoint_metadata(self) -> dict:
        return {
            **self.metadata,
            "training": {
                **self.metadata.get("training", {}),
                "hardware": hardware_summary(self.history, self.metadata.get("training", {}).get("hardware", "")),
                "epochs": self.epoch,
                "best_epoch": self.best_epoch,
                "seconds": round(self.seconds, 1),
                "train_config": self.config.model_dump(),
            },
        }

    # -- loop ----------------------------------------------------------------------------
    @property
    def eval_model(self) -> CrystalGraphNet:
        """The weights that are validated and exported: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def validation_score(self) -> tuple[float, list[float]]:
        """Mean over regression targets of MAE / std (normalised units), and the per-target figures.

        A regression target's figure is its MAE (a gated band gap: after gating at the model's
        threshold); a metal-probability target's is its classification error rate (threshold 0.5).
        """
        model = self.eval_model
        pred = predict_packed(model, self.packed_val, batch_size=512)
        figures, scaled = [], []
        std = model.target_std.detach().cpu().double().numpy()
        for t, spec in enumerate(model.config.targets):
            y = self.val_y[:, t]
            if spec.is_probability:
                mask = np.isfinite(y)
                figures.append(float(np.mean((pred[mask, t] > 0.5) != (y[mask] > 0.5))))
            else:
                figures.append(float(np.nanmean(np.abs(pred[:, t] - y))))
                scaled.append(figures[-1] / std[t])
        return float(np.mean(scaled)), figures

    def fit(self, progress: bool = True, log=print, stop_after: int | None = None) -> list[dict]:
        """Train until the epoch budget or early stopping; returns the history.

        Args:
            progress: Show a progress bar per epoch.
            log: Called with one line per epoch.
            stop_after: Stop after this many epochs in this call (a later :meth:`resume`
                continues exactly where it stopped).
        """
        cfg = self.config
        names = self.model.target_names
        done_here = 0
        while self.epoch < cfg.epochs and self.bad_epochs < cfg.patience:
            if stop_after is not None and done_here >= stop_after:
                break
            done_here += 1
            rng = random.Random(cfg.seed * 1_000_003 + self.epoch)
            t0 = time.perf_counter()
            self.model.train()
            order = list(range(len(self.train)))
            rng.shuffle(order)
            n_batches = max(1, len(order) // cfg.batch_size)  # drop the last partial batch
            # The running loss stays on the device (a ``.item()`` per step would wait for the GPU
            # every step); float64 sums of the same float32 losses, in the same order, as before.
            total = torch.zeros((), dtype=torch.float64, device=self.device)
            seen = 0
            bar = tqdm(
                range(n_batches),
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                leave=False,
                disable=not progress,
                unit="batch",
            )
            for b in bar:
                inputs, y = self.packed_train.batch(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
                if y is None:  # packed with the labels above: cannot happen
                    raise RuntimeError("training graphs without labels")
                inputs, y = inputs.to(self.device), y.to(self.device, non_blocking=True)
                out = self.model(*inputs)
                loss = _loss(out, y, self.model, cfg)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                total += loss.detach().double() * len(y)
                seen += len(y)
                if progress and b % 10 == 0:
                    bar.set_postfix(loss=f"{total.item() / seen:.4f}")
            self.model.eval()
            self.eval_model.eval()
            score, maes = self.validation_score()
            self.epoch += 1
            self.seconds += time.perf_counter() - t0
            improved = score < self.best_score
            if improved:
                self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
            else:
                self.bad_epochs += 1
            row = {
                "epoch": self.epoch,
                "train_loss": total.item() / max(seen, 1),
                "val_score": score,
                **{
                    f"{'val_error' if spec.is_probability else 'val_mae'}_{spec.name}": m
                    for spec, m in zip(self.model.config.targets, maes, strict=True)
                },
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 2),
                "structures_per_s": round(seen / (time.perf_counter() - t0), 1),
            }
            if "hardware" in self.metadata.get("training", {}):  # a run may move (CPU, then a borrowed GPU)
                row["hardware"] = self.metadata["training"]["hardware"]
            self.history.append(row)
            with open(self.run_dir / "history.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            if improved:
                save_checkpoint(self.eval_model, self.run_dir / "best.pt", self._checkpoint_metadata())
            self._save_last()
            maes_txt = ", ".join(f"{n} {m:.4f}" for n, m in zip(names, maes, strict=True))
            log(
                f"epoch {self.epoch:4d}  loss {row['train_loss']:.4f}  val MAE {maes_txt}  "
                f"{row['structures_per_s']:.0f} structures/s{'  *best' if improved else ''}"
            )
        return self.history
