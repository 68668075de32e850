"""The training loop: AdamW, cosine schedule, early stopping on validation MAE, resume."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch_geometric.data import Data
from tqdm import tqdm

from crystalgraph import CrystalGraphNet, collate, model_inputs, predict_graphs, save_checkpoint

__all__ = ["TrainConfig", "Trainer", "with_labels"]


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


def with_labels(graphs: list[Data], labels: np.ndarray) -> list[Data]:
    """Shallow copies of the graphs carrying ``y: [1, T]`` (the cached graphs stay untouched)."""
    y = torch.as_tensor(labels, dtype=torch.float32)
    return [
        Data(z=g.z, edge_index=g.edge_index, edge_dist=g.edge_dist, num_nodes=g.num_nodes, y=y[i : i + 1])
        for i, g in enumerate(graphs)
    ]


def _loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    mask = torch.isfinite(target)
    pred, target = pred[mask], target[mask]
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "huber":
        return F.huber_loss(pred, target, delta=1.0)
    return F.mse_loss(pred, target)


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
    """

    def __init__(
        self,
        model: CrystalGraphNet,
        train: list[Data],
        val: list[Data],
        config: TrainConfig,
        run_dir: Path,
        metadata: dict | None = None,
    ) -> None:
        self.model, self.train, self.val, self.config = model, train, val, config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metadata = dict(metadata or {})
        y = torch.cat([g.y for g in train])
        finite = torch.isfinite(y)
        mean = torch.stack([y[finite[:, t], t].mean() for t in range(y.shape[1])])
        std = torch.stack([y[finite[:, t], t].std() for t in range(y.shape[1])])
        model.set_normalizer(mean, std)
        self.val_y = torch.cat([g.y for g in val]).numpy().astype(np.float64)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=config.epochs, eta_min=config.lr * config.min_lr_ratio
        )
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
        state = torch.load(path, weights_only=True)
        if state["train_config"] != self.config.model_dump_json():
            raise ValueError(f"{path}: saved with other training settings; use a new run folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
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
                "epochs": self.epoch,
                "best_epoch": self.best_epoch,
                "seconds": round(self.seconds, 1),
                "train_config": self.config.model_dump(),
            },
        }

    # -- loop ----------------------------------------------------------------------------
    def validation_score(self) -> tuple[float, list[float]]:
        """Mean over targets of MAE / std (normalised units), and the per-target MAEs."""
        pred = predict_graphs(self.model, self.val, batch_size=512)
        maes = [float(np.nanmean(np.abs(pred[:, t] - self.val_y[:, t]))) for t in range(pred.shape[1])]
        std = self.model.target_std.double().numpy()
        return float(np.mean(np.asarray(maes) / std)), maes

    def fit(self, progress: bool = True, log=print, stop_after: int | None = None) -> list[dict]:
        """Train until the epoch budget or early stopping; returns the history.

        Args:
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
            total, seen = 0.0, 0
            bar = tqdm(
                range(n_batches),
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                leave=False,
                disable=not progress,
                unit="batch",
            )
            for b in bar:
                batch = collate([self.train[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]])
                out = self.model(*model_inputs(batch))
                target = (batch.y - self.model.target_mean) / self.model.target_std
                loss = _loss(out, target, cfg.loss)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += loss.detach().item() * batch.num_graphs
                seen += batch.num_graphs
                if b % 10 == 0:
                    bar.set_postfix(loss=f"{total / seen:.4f}")
            self.scheduler.step()
            self.model.eval()
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
                "train_loss": total / max(seen, 1),
                "val_score": score,
                **{f"val_mae_{n}": m for n, m in zip(names, maes, strict=True)},
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 2),
                "structures_per_s": round(seen / (time.perf_counter() - t0), 1),
            }
            self.history.append(row)
            with open(self.run_dir / "history.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            if improved:
                save_checkpoint(self.model, self.run_dir / "best.pt", self._checkpoint_metadata())
            self._save_last()
            maes_txt = ", ".join(f"{n} {m:.4f}" for n, m in zip(names, maes, strict=True))
            log(
                f"epoch {self.epoch:4d}  loss {row['train_loss']:.4f}  val MAE {maes_txt}  "
                f"{row['structures_per_s']:.0f} structures/s{'  *best' if improved else ''}"
            )
        return self.history
