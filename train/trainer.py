"""The training loop: data, model, optimiser, schedule, logging, checkpoints and resume, single-process or DDP.

Run directory ``<out>/<run-name>`` (layout in ``core.lab.artifacts``): ``run.json``, TensorBoard event
files, ``weights/{last,best,Final}.pth``. Scalars use the ``TB_TAGS`` names; per-step tags
(``train_step/*``) are indexed by the 0-based global step, per-epoch tags by the 1-based epoch.

Resume: ``last.pth`` is written (atomically) at the end of every epoch with the optimiser,
scheduler, AMP scaler, epoch, global step, RNG states and best metric. ``--resume auto`` restarts
from it; the data order and augmentation of every epoch are a function of (seed, epoch, rank), so
the resumed epochs see exactly the batches an uninterrupted run would have. TensorBoard restarts
with ``purge_step`` = the checkpoint's global step, which hides the steps of the lost partial epoch.
Under torchrun rank 0 alone decides whether to resume and reads the checkpoint; the decision and the
checkpoint's contents are broadcast, so ranks without a shared filesystem cannot disagree.

DDP (``torchrun``): ``--batch-size`` is the global batch, each rank loads ``batch / world_size``
images through a ``DistributedSampler`` (``drop_last``), so a run has the same number of optimiser
steps per epoch as a single-process run. Each rank normalises its loss by its own positives and
DDP averages the gradients (the single-process loss normalises by the positives of the whole
batch: the two agree up to that weighting). Rank 0 alone validates, logs and writes checkpoints.

Host syncs: a step queues its work without waiting for the device (sync-free loss, losses kept on
the device); every ``--log-every`` steps one all-reduce and one copy bring the pending step losses
to the host, where they are logged per step and checked for NaN/inf. A non-finite loss stops the
run at that check, naming its epoch and step; checkpoints are written only after the end-of-epoch
check, so none ever holds weights updated from a bad loss.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from core.backbone_weights import BackboneWeightsInfo, load_backbone_weights
from core.checkpoint import CheckpointError, load_weights, read_checkpoint, save_checkpoint
from core.data.augment import EvalTransform, TrainTransform
from core.data.dataset import WiderFaceDetection, detection_collate
from core.data.widerface import OnError
from core.factory import build_model
from core.lab.artifacts import MANIFEST_JSON, RUN_JSON, TB_TAGS, atomic_write_json, write_run_info
from core.lab.recipes import DEFAULT_RECIPE, get_recipe
from core.losses import MultiBoxLoss
from train import distributed
from train.schedule import WarmupMultiStepLR, default_lr_steps, scale_lr_steps
from train.state import (
    BEST,
    FINAL,
    LAST,
    ResumeError,
    capture_rng,
    epoch_seed,
    resolve_resume,
    restore_rng,
    run_dir_of_checkpoint,
    weights_dir,
)
from train.stepper import ScaledStepper
from train.validate import ap_unavailable_reason, cudnn_autotune_off, val_ap, val_losses

LOSS_NAMES: tuple[str, ...] = ("total", "box", "cls", "landmark")
STEP_TAGS = ("step_loss", "step_loss_box", "step_loss_cls", "step_loss_landmark")
TRAIN_TAGS = ("train_loss", "train_loss_box", "train_loss_cls", "train_loss_landmark")
VAL_TAGS = ("val_loss", "val_loss_box", "val_loss_cls", "val_loss_landmark")


_DEFAULT = get_recipe(DEFAULT_RECIPE)  # TrainConfig's defaults
FULL_RECIPE_EPOCHS = 100  # from here on, a run is meant to reproduce published numbers

# TrainConfig fields a recipe sets (TrainRecipe holds the same names).
RECIPE_SETTINGS: tuple[str, ...] = ("optimizer", "lr", "momentum", "weight_decay", "max_epoch", "gamma",
                                    "warmup_epochs", "batch_size", "img_size", "neg_pos", "match_iou")
# TrainConfig fields that decide what a run computes: `--resume auto` takes them from the run's run.json, and
# under torchrun every rank must hold rank 0's values. Device, workers, logging and progress may change.
RESTORED_ON_RESUME: tuple[str, ...] = ("network", "data", "recipe", *RECIPE_SETTINGS, "lr_steps", "seed",
                                       "eval_every", "eval_size", "amp", "on_label_error", "max_train_images",
                                       "sync_bn", "backbone_weights")


class TrainSetupError(ValueError):
    """Arguments and data do not allow a run (too few images, bad batch split, occupied run dir...)."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the run stopped without writing a checkpoint from the bad state."""


class PendingStep(NamedTuple):
    """A step whose losses are still on the device, waiting for the next reduction."""

    step: int  # 1-based within the epoch
    global_step: int
    lr: float
    values: torch.Tensor  # (4,) total, box, cls, landmark


@dataclass
class TrainConfig:
    """Every knob of a run; the defaults are the default recipe's (`core.lab.recipes.RECIPES`, written there only;
    `TrainConfig.from_recipe` for another)."""

    network: str
    data: Path
    max_epoch: int = _DEFAULT.max_epoch
    batch_size: int = _DEFAULT.batch_size
    lr: float = _DEFAULT.lr
    optimizer: str = _DEFAULT.optimizer
    momentum: float = _DEFAULT.momentum
    weight_decay: float = _DEFAULT.weight_decay
    warmup_epochs: float = _DEFAULT.warmup_epochs
    neg_pos: int = _DEFAULT.neg_pos  # hard negatives per positive (RetinaFace's and FeatherFace's train scripts)
    match_iou: float = _DEFAULT.match_iou  # anchor/face IoU for a positive
    lr_steps: list[int] | None = None  # None: the recipe's published milestones scaled to max_epoch
    gamma: float = _DEFAULT.gamma
    img_size: int = _DEFAULT.img_size
    workers: int = 4
    seed: int = 0
    out: Path = Path("runs")
    run_name: str | None = None
    device: str = "auto"
    resume: str | None = None  # None, "auto" or a checkpoint path
    eval_every: int = 10  # epochs between val AP evaluations (0: never); the last epoch is always evaluated
    eval_size: int = 640  # long side for the in-training AP (0: original size)
    amp: bool = False
    on_label_error: OnError = "fail"
    max_train_images: int | None = None
    progress: bool = True
    sync_bn: bool = False  # SyncBatchNorm across ranks under torchrun (CUDA only)
    backbone_weights: str | None = None  # RetinaFace-format ImageNet MobileNetV1-0.25 file for the body
    log_every: int = 10  # steps between loss reductions (one all-reduce + host copy + NaN check per interval)
    recipe: str = DEFAULT_RECIPE  # the recipe the settings started from (recorded in run.json)
    recipe_overrides: list[str] = field(default_factory=list)  # settings given explicitly on top of it
    lr_steps_used: list[int] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        self.lr_steps_used = list(self.lr_steps) if self.lr_steps else default_lr_steps(self.max_epoch)

    def as_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_recipe(cls, recipe: str, network: str, data: Path | str, **overrides: Any) -> TrainConfig:
        """The recipe's settings with `overrides` on top (None values are ignored, as an absent flag).

        Without explicit `lr_steps`, the recipe's milestones scale with an overridden `max_epoch`.
        """
        rec = get_recipe(recipe)
        given = {k: v for k, v in overrides.items() if v is not None}
        values: dict[str, Any] = {key: getattr(rec, key) for key in RECIPE_SETTINGS}
        values.update(given)
        if "lr_steps" not in given:
            values["lr_steps"] = scale_lr_steps(rec.lr_steps, rec.max_epoch, values["max_epoch"])
        changed = sorted(k for k in given if k in (*RECIPE_SETTINGS, "lr_steps"))
        return cls(network=network, data=Path(data), recipe=recipe, recipe_overrides=changed, **values)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    epochs_done: int
    global_step: int
    best: dict[str, Any] | None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dataset_name(data_root: Path) -> str:
    """``manifest.json``'s "dataset" (the synthetic generator writes one), else "widerface"."""
    manifest = Path(data_root) / MANIFEST_JSON
    try:
        return str(json.loads(manifest.read_text())["dataset"])
    except (OSError, ValueError, KeyError, TypeError):
        return "widerface"


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) training as configured; joins the process group under torchrun."""
    ctx = distributed.setup(cfg.device)
    try:
        return Trainer(cfg, ctx).run()
    finally:
        distributed.cleanup(ctx)


class Trainer:
    """One run. Construction prepares everything (and resumes); ``run`` does the epochs."""

    def __init__(self, cfg: TrainConfig, ctx: distributed.DistContext) -> None:
        self.cfg, self.ctx, self.device = cfg, ctx, ctx.device
        self.is_main = ctx.is_main
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
        self.amp = cfg.amp and self.device.type == "cuda"
        if cfg.amp and not self.amp:
            self.log("note: --amp is CUDA-only; training in float32 on", self.device)

        self.run_dir, resume_from, resume_data = self._decide_start()
        self.dataset = dataset_name(cfg.data)
        self._build_data()
        self._build_model(fresh=resume_from is None)
        self.start_epoch, self.global_step = 0, 0
        self.best: dict[str, Any] | None = None
        self.epoch_scalars: dict[str, float] = {}
        self.last_good: Path | None = None
        if resume_from is not None:
            self._resume(resume_from, resume_data)
        self.writer = self._open_writer(resumed=resume_from is not None)
        if self.is_main:
            self._write_run_json(resume_from)

    # Setup
    def log(self, *parts: object) -> None:
        if self.is_main:
            print(*parts, file=sys.stderr, flush=True)

    def _decide_start(self) -> tuple[Path, Path | None, dict[str, Any] | None]:
        """Run dir, checkpoint to resume from and its contents: decided and read by rank 0 alone, broadcast.

        Ranks on nodes without a shared filesystem would otherwise disagree (one resuming, one starting
        fresh) and hang in the first collective; a refusal on rank 0 is raised on every rank.
        """
        decision: tuple | None = None
        if self.is_main:
            try:
                run_dir, resume_from = self._resolve_run_dir()
                data = read_checkpoint(resume_from, map_location="cpu") if resume_from is not None else None
                decision = (run_dir, resume_from, data, None)
            except (TrainSetupError, ResumeError, CheckpointError, OSError) as exc:
                decision = (None, None, None, exc)
        run_dir, resume_from, data, error = distributed.broadcast_object(self.ctx, decision)
        if error is not None:
            raise error
        # `--resume auto` restores flags from run.json, which a rank on a node without the shared filesystem
        # cannot read: such a rank would train another configuration. torchrun stops every rank when one fails.
        mine = {k: str(getattr(self.cfg, k)) for k in RESTORED_ON_RESUME}
        theirs = distributed.broadcast_object(self.ctx, mine if self.is_main else None)
        differ = [k for k in RESTORED_ON_RESUME if mine[k] != theirs[k]]
        if differ:
            raise TrainSetupError(f"rank {self.ctx.rank}: settings differ from rank 0's ({', '.join(differ)}): give "
                                  "them on the command line or put the run folder on a filesystem every node sees")
        return run_dir, resume_from, data

    def _resolve_run_dir(self) -> tuple[Path, Path | None]:
        """Rank 0 only (see `_decide_start`)."""
        cfg = self.cfg
        explicit = cfg.resume not in (None, "auto")
        if cfg.resume == "auto" and not cfg.run_name:
            raise TrainSetupError("--resume auto continues <out>/<run-name>: pass --run-name of the run to continue")
        if cfg.run_name:
            run_dir = cfg.out / cfg.run_name
        elif explicit and run_dir_of_checkpoint(Path(cfg.resume)) is not None:
            run_dir = run_dir_of_checkpoint(Path(cfg.resume))
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = cfg.out / f"{cfg.network}_s{cfg.seed}_{stamp}"
        resume_from = resolve_resume(cfg.resume, run_dir)
        if cfg.resume == "auto" and resume_from is None:
            self.log(f"--resume auto: no {weights_dir(run_dir) / LAST} yet, starting a new run")
        if resume_from is None and (weights_dir(run_dir) / LAST).is_file():
            raise TrainSetupError(f"{run_dir} already holds a training run; pass --resume auto to continue it "
                                  "or choose another --run-name")
        return run_dir, resume_from

    def _build_data(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        if cfg.batch_size % ctx.world_size:
            raise TrainSetupError(f"--batch-size {cfg.batch_size} (global) is not divisible by the "
                                  f"{ctx.world_size} processes")
        self.rank_batch = cfg.batch_size // ctx.world_size
        self.train_transform = TrainTransform(cfg.img_size, rng=np.random.default_rng(cfg.seed))
        train_set = WiderFaceDetection(cfg.data, "train", self.train_transform, cfg.on_label_error)
        if cfg.max_train_images is not None:
            train_set = Subset(train_set, range(min(cfg.max_train_images, len(train_set))))
        if len(train_set) < cfg.batch_size:
            raise TrainSetupError(f"{len(train_set)} training images, fewer than --batch-size {cfg.batch_size}: "
                                  "no full batch (the last partial batch of an epoch is dropped, as in RetinaFace)")
        self.num_train = len(train_set)
        # A DistributedSampler even for one process: per-epoch order is then a pure function of (seed, epoch).
        self.sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.loader_generator = torch.Generator()
        pin = self.device.type == "cuda"
        self.train_loader = DataLoader(train_set, batch_size=self.rank_batch, sampler=self.sampler,
                                       num_workers=cfg.workers, collate_fn=detection_collate, drop_last=True,
                                       pin_memory=pin, generator=self.loader_generator)
        self.steps_per_epoch = len(self.train_loader)

        self.val_loader = None
        if self.is_main and (cfg.data / "val" / "label.txt").is_file():
            val_set = WiderFaceDetection(cfg.data, "val", EvalTransform(cfg.img_size), cfg.on_label_error)
            self.val_loader = DataLoader(val_set, batch_size=self.rank_batch, shuffle=False,
                                         num_workers=cfg.workers, collate_fn=detection_collate, pin_memory=pin)
        self.ap_reason = "disabled by --eval-every 0" if cfg.eval_every <= 0 else ap_unavailable_reason(cfg.data)
        if self.ap_reason:
            self.log(f"val AP will not be computed: {self.ap_reason}")

    def _build_model(self, fresh: bool = True) -> None:
        """Model (ImageNet body from --backbone-weights on a fresh run), DDP wrapper, loss, optimiser, schedule."""
        cfg = self.cfg
        self.net = build_model(cfg.network)
        self.backbone_info: BackboneWeightsInfo | None = None
        if cfg.backbone_weights and fresh:
            self.backbone_info = load_backbone_weights(self.net.body, cfg.backbone_weights)
            self.log(f"backbone: {self.backbone_info.name} (sha256 {self.backbone_info.sha256[:12]}...)")
        elif fresh and cfg.max_epoch >= FULL_RECIPE_EPOCHS:
            self.log(f"warning: {cfg.max_epoch} epochs from a randomly initialised backbone; the published numbers "
                     "assume the ImageNet-pretrained MobileNetV1-0.25 (--backbone-weights "
                     "mobilenetV1X0.25_pretrain.tar, or make one with python -m train.pretrain_backbone)")
        self.net = self.net.to(self.device)
        self.sync_bn = cfg.sync_bn and self.ctx.distributed
        if cfg.sync_bn and not self.sync_bn:
            self.log("note: --sync-bn only matters under torchrun with several processes; plain BatchNorm used")
        if self.sync_bn:
            if self.device.type != "cuda":
                raise TrainSetupError("--sync-bn needs CUDA: SyncBatchNorm has no CPU kernel; drop --sync-bn for a "
                                      "CPU (gloo) run")
            # Every BatchNorm, the CBAM spatial gate's included; names are unchanged, so checkpoints load
            # into the plain model.
            self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
        self.model: torch.nn.Module = self.net
        if self.ctx.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=ids)
        self.anchors = self.net.anchors_for((cfg.img_size, cfg.img_size), self.device)
        self.criterion = MultiBoxLoss(self.net.cfg.anchors.variances, overlap_threshold=cfg.match_iou,
                                      neg_pos_ratio=cfg.neg_pos)
        if cfg.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                             weight_decay=cfg.weight_decay)
        else:
            raise TrainSetupError(f"unknown optimizer {cfg.optimizer!r}; choose adamw or sgd")
        self.scheduler = WarmupMultiStepLR(self.optimizer, self.steps_per_epoch, cfg.warmup_epochs,
                                           cfg.lr_steps_used, cfg.gamma)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.stepper = ScaledStepper(self.optimizer, self.scheduler, self.scaler)

    def _resume(self, path: Path, data: dict[str, Any]) -> None:
        if data.get("model_name") != self.cfg.network:
            raise ResumeError(f"{path} holds model {data.get('model_name')!r}, not --network {self.cfg.network}")
        missing = [k for k in ("optimizer", "scheduler", "epoch", "global_step") if k not in data]
        if missing:
            raise ResumeError(f"{path} has no training state {missing}: resume from weights/{LAST}")
        if data.get("steps_per_epoch") != self.steps_per_epoch:
            self.log(f"warning: {path} was trained with {data.get('steps_per_epoch')} steps per epoch, now "
                     f"{self.steps_per_epoch} (batch size or data changed); the LR milestones keep the old count")
        load_weights(self.net, data["state_dict"], source=str(path))
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if self.amp and data.get("scaler"):
            self.scaler.load_state_dict(data["scaler"])
        restore_rng(data["rng"])
        self.start_epoch, self.global_step = int(data["epoch"]), int(data["global_step"])
        self.best = data.get("best")
        self.epoch_scalars = dict(data.get("epoch_scalars", {}))
        self.last_good = path
        self.log(f"resuming {self.run_dir} from {path}: epoch {self.start_epoch} done, global step {self.global_step}")

    def _open_writer(self, resumed: bool) -> SummaryWriter | None:
        if not self.is_main:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=self.global_step if resumed else None)
        # purge_step hides every event at step >= global_step, the epoch-indexed ones included. Only
        # with one step per epoch can that hit a finished epoch (the last one): write it again.
        if resumed and self.start_epoch >= self.global_step:
            for tag, value in self.epoch_scalars.items():
                writer.add_scalar(tag, value, self.start_epoch)
        return writer

    def _write_run_json(self, resume_from: Path | None) -> None:
        path = self.run_dir / RUN_JSON
        now = utc_now()
        if resume_from is not None and path.is_file():
            meta = json.loads(path.read_text())
            meta.setdefault("resumes", []).append({"at": now, "from": str(resume_from), "epoch": self.start_epoch,
                                                   "global_step": self.global_step})
            meta["status"] = "running"
        else:
            cfg = self.cfg
            meta = {
                "model": cfg.network, "dataset": self.dataset, "seed": cfg.seed, "max_epoch": cfg.max_epoch,
                "batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": cfg.optimizer, "created": now,
                "lr_steps": cfg.lr_steps_used, "img_size": cfg.img_size, "data": str(cfg.data),
                "recipe": cfg.recipe, "recipe_overrides": cfg.recipe_overrides, "neg_pos": cfg.neg_pos,
                "match_iou": cfg.match_iou,
                "backbone_weights": self.backbone_info.as_json() if self.backbone_info else None,
                "num_train_images": self.num_train, "steps_per_epoch": self.steps_per_epoch,
                "world_size": self.ctx.world_size, "device": str(self.device), "amp": self.amp,
                "sync_bn": self.sync_bn,
                "params": self.net.get_parameter_count()["total"], "torch": torch.__version__,
                "args": cfg.as_json(), "status": "running",
            }
        write_run_info(self.run_dir, meta)

    def _update_run_json(self, **fields: Any) -> None:
        path = self.run_dir / RUN_JSON
        meta = json.loads(path.read_text())
        meta.update(fields)
        atomic_write_json(path, meta)

    # Loop
    def run(self) -> TrainResult:
        cfg = self.cfg
        try:
            for epoch in range(self.start_epoch + 1, cfg.max_epoch + 1):
                self._run_epoch(epoch)
            if self.is_main:
                epoch = max(self.start_epoch, cfg.max_epoch)
                save_checkpoint(weights_dir(self.run_dir) / FINAL, self.net, **self._summary(epoch))
                self._update_run_json(status="finished", epochs_done=epoch, global_step=self.global_step,
                                      best=self.best, finished=utc_now())
                self.log(f"done: {self.run_dir} ({epoch} epochs, {self.global_step} steps, best {self.best})")
            distributed.barrier(self.ctx)
        except NonFiniteLossError as exc:
            if self.is_main:
                self._update_run_json(status="failed", error=str(exc))
            raise
        finally:
            if self.writer is not None:
                self.writer.close()
        return TrainResult(self.run_dir, max(self.start_epoch, cfg.max_epoch), self.global_step, self.best)

    def _run_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        means, seconds = self._train_epoch(epoch)
        scalars = {TB_TAGS[t]: float(v) for t, v in zip(TRAIN_TAGS, means, strict=True)}
        scalars[TB_TAGS["lr"]] = self.epoch_lr
        scalars[TB_TAGS["epoch_time"]] = seconds
        scalars[TB_TAGS["images_per_s"]] = self.steps_per_epoch * cfg.batch_size / seconds
        if self.is_main:
            val_start, ap = time.perf_counter(), None
            with cudnn_autotune_off():  # val images vary in size: re-tuning for each shape costs more than it saves
                if self.val_loader is not None:
                    val = val_losses(self.net, self.val_loader, self.criterion, self.anchors, self.device, self.amp)
                    scalars |= {TB_TAGS[t]: float(v) for t, v in zip(VAL_TAGS, val, strict=True)}
                if not self.ap_reason and (epoch % cfg.eval_every == 0 or epoch == cfg.max_epoch):
                    ap = val_ap(self.net, cfg.data, cfg.eval_size or None)
                    scalars |= {TB_TAGS[f"ap_{k}"]: v for k, v in ap.items()}
            scalars[TB_TAGS["val_time"]] = time.perf_counter() - val_start
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, epoch)
            self.writer.flush()
            self.epoch_scalars = scalars
            improved = self._update_best(epoch, ap, scalars)
            extra = self._training_state(epoch)
            save_checkpoint(weights_dir(self.run_dir) / LAST, self.net, **extra)
            self.last_good = weights_dir(self.run_dir) / LAST
            if improved:
                save_checkpoint(weights_dir(self.run_dir) / BEST, self.net, **self._summary(epoch))
            summary = ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
            self.log(f"epoch {epoch}/{cfg.max_epoch}: {summary}" + (" (best)" if improved else ""))
        distributed.barrier(self.ctx)

    def _train_epoch(self, epoch: int) -> tuple[list[float], float]:
        """One pass over the training set; returns mean (total, box, cls, landmark) and seconds.

        Step losses stay on the device and are reduced, logged and checked for NaN/inf every
        ``log_every`` steps and at the end of the epoch (so before any checkpoint is written), not
        at every step: each check waits for the device. Leaves ``epoch_lr`` = the rate of the
        epoch's last step (what the epoch-level lr tag shows).
        """
        seed = epoch_seed(self.cfg.seed, epoch, self.ctx.rank)
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(seed)  # DataLoader workers derive their seeds from it
        self.train_transform.reseed(seed)  # used as is in the main process (--workers 0)
        self.model.train()
        sums = torch.zeros(4, dtype=torch.float64)
        steps = 0
        pending: list[PendingStep] = []
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{self.cfg.max_epoch}", unit="step",
                   disable=not (self.is_main and self.cfg.progress), leave=False)
        start = time.perf_counter()
        for images, targets in self.train_loader:
            steps += 1
            lr = self.epoch_lr = self.optimizer.param_groups[0]["lr"]
            pending.append(PendingStep(steps, self.global_step, lr, self._train_step(images, targets)))
            self.global_step += 1
            if len(pending) >= self.cfg.log_every or steps == self.steps_per_epoch:
                for row in self._flush(epoch, pending):
                    sums += row
                rate = steps * self.cfg.batch_size / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{row[0].item():.3f}", img_s=f"{rate:.1f}", refresh=False)
                pending = []
            bar.update()
        if pending:
            for row in self._flush(epoch, pending):
                sums += row
        bar.close()
        return (sums / max(steps, 1)).tolist(), time.perf_counter() - start

    def _flush(self, epoch: int, pending: list[PendingStep]) -> torch.Tensor:
        """Reduce the pending steps' losses over ranks in one collective, copy them to the host once,
        stop at the first non-finite one, and write the per-step scalars. Returns (n, 4) float64."""
        reduced = distributed.all_reduce_mean(self.ctx, torch.stack([p.values for p in pending]))
        rows = reduced.double().cpu()
        finite = torch.isfinite(rows).all(dim=1).tolist()
        for p, row, ok in zip(pending, rows, finite, strict=True):
            if not ok:
                raise NonFiniteLossError(self._nan_message(epoch, p.step, p.global_step, row))
            if self.writer is not None:
                for tag, value in zip(STEP_TAGS, row.tolist(), strict=True):
                    self.writer.add_scalar(TB_TAGS[tag], value, p.global_step)
                self.writer.add_scalar(TB_TAGS["step_lr"], p.lr, p.global_step)
        return rows

    def _train_step(self, images: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor:
        """Forward, loss, backward, optimiser and LR step; returns the (4,) loss terms, still on the device."""
        images = images.to(self.device, non_blocking=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            outputs = self.model(images)
        terms = self.criterion(outputs, self.anchors, targets)
        self.stepper.step(terms.total)
        return torch.stack([t.detach() for t in terms])

    def _nan_message(self, epoch: int, step: int, global_step: int, values: torch.Tensor) -> str:
        terms = ", ".join(f"{n}={v:.4g}" for n, v in zip(LOSS_NAMES, values.tolist(), strict=True))
        kept = (f"the last good checkpoint {self.last_good} was kept unchanged" if self.last_good
                else "no checkpoint had been written yet")
        return (f"non-finite loss at epoch {epoch}, step {step}/{self.steps_per_epoch} (global step "
                f"{global_step}): {terms}. Training stopped at the next loss check (every --log-every "
                f"{self.cfg.log_every} steps), before any checkpoint from the bad weights; {kept}. "
                "Try a lower --lr or a longer --warmup-epochs, and check the labels.")

    # Checkpoints
    def _update_best(self, epoch: int, ap: dict[str, float] | None, scalars: dict[str, float]) -> bool:
        """best.pth criterion: mean val AP when AP is evaluated, else val loss, else train loss."""
        if not self.ap_reason:
            if ap is None:
                return False
            metric, value, higher = "val_ap_mean", float(np.mean(list(ap.values()))), True
        elif self.val_loader is not None:
            metric, value, higher = "val_loss", scalars[TB_TAGS["val_loss"]], False
        else:
            metric, value, higher = "train_loss", scalars[TB_TAGS["train_loss"]], False
        if not math.isfinite(value):
            return False
        if self.best is not None and self.best["metric"] == metric:
            old = float(self.best["value"])
            if (value <= old) if higher else (value >= old):
                return False
        self.best = {"metric": metric, "value": value, "epoch": epoch}
        return True

    def _summary(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "global_step": self.global_step, "best": self.best, "run_name": self.run_dir.name,
                "dataset": self.dataset, "args": self.cfg.as_json()}

    def _training_state(self, epoch: int) -> dict[str, Any]:
        return {
            **self._summary(epoch),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(),
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_scalars": self.epoch_scalars,
        }
