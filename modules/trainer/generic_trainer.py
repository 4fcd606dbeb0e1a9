"""GenericTrainer: the training loop, written once for every model family and training method.

It knows a model only through the plugin contract (modules/base). Read `train` top to bottom:
cache (encoders alone) -> load -> set up -> loop (predict, loss, backward, step, log, save) -> save -> sample.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from modules.base.model_setup import TrainProgress
from modules.config.train_config import TrainConfig
from modules.registry import Plugin, plugin_for
from modules.trainer.distributed import Distributed, QuietSampleHooks, create_accelerator
from modules.trainer.guards.host_memory_check import check_host_memory
from modules.trainer.guards.nonfinite_loss import nonfinite_loss_error
from modules.trainer.guards.oom import StepGuard
from modules.trainer.guards.preflight import check_before_loading
from modules.trainer.guards.run_requests import clear as clear_run_requests
from modules.trainer.guards.run_requests import take_requests
from modules.trainer.guards.save_fallback import save_or_keep
from modules.trainer.guards.stop_request import TrainingStopped, stop_if_requested
from modules.trainer.guards.workspace_lock import WorkspaceLock
from modules.trainer.optim.optimizer_modes import optimizer_eval_weights
from modules.trainer.optim.optimizers import create_lr_scheduler, create_optimizer
from modules.trainer.reporting.run_log import RunLog
from modules.trainer.reporting.run_start import record_data_report, write_run_report
from modules.trainer.samples.sample_hooks import SampleHooks
from modules.trainer.samples.validation_loss import validation_config
from modules.trainer.state.ema import create_ema, ema_weights_in_use
from modules.trainer.state.resume import BackupController, check_fresh_start
from modules.trainer.state.rng_state import seed_all
from modules.trainer.state.training_state import TrainingState
from modules.util.device import resolve_device
from modules.util.errors import UserError
from modules.util.stop_point import StopRequest, StopRequested, current_stop_request, stop_scope

log = logging.getLogger("wan_trainer")


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (for example a non-finite loss); the message says what to change."""


@dataclass
class TrainResult:
    workspace: Path
    output_files: list[Path] = field(default_factory=list)
    sample_files: list[Path] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    steps: int = 0


def until_stop(work: Callable[[], object]) -> None:
    """Run `work` (samples, validation); a stop point inside it ends it early, and the stop itself is left to the
    loop's next check, which every process reaches (with several processes only the main one samples)."""
    try:
        work()
    except StopRequested:
        pass


class GenericTrainer:
    def __init__(self, config: TrainConfig, plugin: Plugin | None = None, stop: StopRequest | None = None):
        self.config = config
        # This run's stop request: the one scripts/train.py's signal handlers mark, else a private one (never
        # shared with another run, so a stop of one in-process run cannot end a later one).
        self.stop = stop or current_stop_request() or StopRequest()
        self.plugin = plugin or plugin_for(config.model_type, config.training_method)
        self.workspace = Path(config.output.workspace_dir)
        requested = resolve_device(config.training.device)
        # Accelerate owns process placement: with several processes each gets its own device (docs/multi_gpu.md).
        self.accelerator = create_accelerator(cpu=requested.type == "cpu")
        self.distributed = Distributed(self.accelerator)
        self.device = (
            requested if requested.index is not None and not self.distributed.several else self.accelerator.device
        )
        self.model = None
        self.data = None
        self.setup = None
        self.workspace_lock: WorkspaceLock | bool | None = None
        # Called after every optimizer step with (progress, loss): for UIs and benchmarks.
        self.step_callbacks: list[Callable[[TrainProgress, float], None]] = []

    # ---- phases --------------------------------------------------------------------------------
    def claim_workspace(self) -> None:
        """Checks that need no model, then the workspace lock (held until train() ends or the process exits)."""
        if self.workspace_lock is None:
            # Writable outputs, readable concepts: found in seconds, not after the model has loaded.
            check_before_loading(self.config, self.plugin.data_loader(), self.plugin.setup, self.distributed.world_size)
            # With several processes the main one holds the lock for all (they share the workspace).
            self.workspace_lock = WorkspaceLock(self.workspace).acquire() if self.distributed.is_main else False
            try:
                check_fresh_start(self.config)  # a stopped run's backups: resume it, never start over beside it
            except BaseException:
                if self.workspace_lock:
                    self.workspace_lock.release()
                self.workspace_lock = None
                raise

    def load_and_cache(self) -> None:
        """Build (or reuse) the cache and load the model, in the order the plugin allows (the cache first where the
        encoders alone build it); after this, no step decodes media. A stop asked for meanwhile is taken between
        model parts or cache entries (TrainingStopped, no backup: nothing trained)."""
        with stop_scope(self.stop):
            try:
                self._load_and_cache()
            except StopRequested as stopped:
                raise TrainingStopped.from_stop_point(stopped) from None

    def _load_and_cache(self) -> None:
        self.claim_workspace()
        self.workspace.mkdir(parents=True, exist_ok=True)
        if self.distributed.is_main:
            write_run_report(self)  # diagnostics.json, and a warning when the memory plan does not fit this GPU
        check_host_memory(self.config, self.distributed.world_size)  # refused here, not killed by the kernel later
        loader = self.plugin.loader()
        self.data = self.plugin.data_loader()
        self.data.share_between(self.distributed.rank, self.distributed.world_size)
        if loader.caches_before_loading(self.config):
            # Caching first, with the encoders alone; they are released before the denoisers load, so the host
            # peak is the larger of the two phases, not their sum (modules/memory/host.py plans them so).
            log.info("phase: caching (encoders only; the model loads after they are released)")
            with self.distributed.main_first():  # the main process builds the cache; the others then only read it
                caching_model = loader.load_for_caching(self.config)
                # The held-out clips too (validation_loss.py then finds them cached), with the same encoders: they
                # are released after the held-out clips, so each is read at most once.
                validating = bool(self.config.sampling.validation_concept) and self.distributed.is_main
                self.data.prepare(caching_model, self.config, self.device, release_encoders=not validating)
                if validating:
                    self.plugin.data_loader().prepare(caching_model, validation_config(self.config), self.device)
                del caching_model
            log.info("phase: loading the model")
            self.model = loader.load(self.config)
            self.data.attach(self.model, self.config, self.device)  # reads no encoder
        else:  # the encoders stay with the model (WAN: embeddings in UMT5), so cache with the loaded model
            log.info("phase: loading the model, then caching with it")
            self.model = loader.load(self.config)
            with self.distributed.main_first():
                self.data.prepare(self.model, self.config, self.device)
        if self.distributed.is_main:
            record_data_report(self)  # per concept and file: corrections, unused and skipped files

    def build_cache(self):
        """Caching as its own phase (scripts/cache.py): the encoders and the data, no denoiser. Returns the
        prepared data loader; a later train() with the same config rebuilds no entry."""
        self.claim_workspace()
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
            model = self.plugin.loader().load_for_caching(self.config)
            data = self.plugin.data_loader()
            data.prepare(model, self.config, self.device)
            return data
        finally:
            if self.workspace_lock:
                self.workspace_lock.release()
            self.workspace_lock = None

    def set_up_training(self) -> None:
        seed_all(self.config.training.seed)  # adapter initialisation draws from the global RNGs
        self.setup = self.plugin.setup()
        self.setup.setup_model(self.model, self.config)
        self.setup.setup_train_device(self.model, self.config, self.device)
        self.distributed.prepare_model(self.setup, self.model, self.config)  # FSDP shards before the optimizer
        groups = self.setup.parameter_groups(self.model, self.config)
        self.parameters = [p for group in groups for p in group["params"]]
        self.optimizer = create_optimizer(groups, self.config.training)
        self.lr_scheduler = create_lr_scheduler(self.optimizer, self.config.training)
        self.optimizer, self.lr_scheduler = self.accelerator.prepare(self.optimizer, self.lr_scheduler)
        self.generator = torch.Generator().manual_seed(self.config.training.seed)
        self.progress = TrainProgress()
        self.ema = create_ema(self.config.ema, self.parameters, self.device)
        self.state = TrainingState(
            config=self.config,
            model=self.model,
            setup=self.setup,
            progress=self.progress,
            parameters=self.parameters,
            optimizer=self.optimizer,
            lr_scheduler=self.lr_scheduler,
            generator=self.generator,
            ema=self.ema,
            device=self.device,
            workspace=self.workspace,
            distributed=self.distributed,
        )
        # Resuming here (not in train) lets a caller that sets up first inspect the resumed state.
        self.backups = BackupController(self.state)
        if self.backups.resume_if_configured():
            self.setup.after_optimizer_step(self.model, self.config)  # the backup's weights are the new ones
        self.step_guard = StepGuard(self)  # an out-of-memory stop backs up the last completed step

    def train(self) -> TrainResult:
        self.claim_workspace()
        try:
            with stop_scope(self.stop):
                return self._train()
        finally:
            if self.workspace_lock:  # False in the processes other than the main one
                self.workspace_lock.release()
            self.workspace_lock = None

    def _train(self) -> TrainResult:
        self.workspace.mkdir(parents=True, exist_ok=True)
        if self.model is None:
            self.load_and_cache()
        if self.setup is None:  # callers (tests, benchmarks, the UI) may set up first to inspect the model
            self.set_up_training()
        result = TrainResult(workspace=self.workspace)
        config = self.config
        tensorboard_dir = self.workspace / "tensorboard" if config.output.tensorboard else None
        main = self.distributed.is_main  # only the main process writes outputs and shows progress
        run_log = RunLog(config.training.max_steps, self.progress.global_step, tensorboard_dir if main else None, main)
        run_log.message(f"batch: {self.distributed.describe_batch(config)}")
        try:
            # Checks the video encoder and prepares validation data before the first step.
            self.sample_hooks = SampleHooks(self.state, self.plugin, run_log) if main else QuietSampleHooks()
            until_stop(self.sample_hooks.before_training)  # a stop there is taken by the loop's first check
            self._loop(run_log, result)
            result.output_files = save_or_keep(self, self.output_path())
            run_log.message(f"saved: {', '.join(map(str, result.output_files))}")
            self._stop_after_the_final_save(result, "saving")  # a save is never cut; the stop comes right after
            if config.sampling.sample_at_end:
                try:
                    result.sample_files = self.sample_all(f"end-step{self.progress.global_step:06d}", run_log)
                except StopRequested:
                    self._stop_after_the_final_save(result, "sampling at the end")
        finally:
            run_log.close()
        result.steps = self.progress.global_step
        return result

    # ---- the loop ------------------------------------------------------------------------------
    def _loop(self, run_log: RunLog, result: TrainResult) -> None:
        config, progress = self.config, self.progress
        accumulation = config.training.gradient_accumulation_steps
        micro_step, accumulated_loss = 0, 0.0
        if self.distributed.is_main:  # a request left after an earlier run ended is not for this one
            clear_run_requests(self.workspace)
        stop_if_requested(self)  # Ctrl-C while loading/caching: stop before the first step
        while progress.global_step < config.training.max_steps:
            for batch in self.data.batches(progress.epoch, skip=progress.epoch_step):
                try:
                    loss = self._forward_backward(batch, accumulation)
                except torch.OutOfMemoryError as error:
                    raise self.step_guard.handle(error) from error
                accumulated_loss += loss
                micro_step += 1
                progress.epoch_step += 1
                if micro_step % accumulation:
                    continue
                self._optimizer_step()
                progress.global_step += 1
                if self.ema is not None:
                    self.ema.update(progress.global_step)
                step_loss, accumulated_loss = accumulated_loss, 0.0
                result.losses.append(step_loss)
                run_log.step(progress.global_step, step_loss, self.lr_scheduler.get_last_lr()[0])
                for callback in self.step_callbacks:
                    callback(progress, step_loss)
                self._save_on_schedule(run_log)
                # Samples and validation loss on their schedule; a stop asked for meanwhile cuts the sample short
                # and is taken below, after this step's backup.
                until_stop(self.sample_hooks.after_step)
                self.backups.on_step()  # after saves and samples, so a resume repeats none of them
                self.step_guard.mark()
                take_requests(self, run_log)  # the GUI's sample / backup / save now (trainer/guards/run_requests.py)
                stop_if_requested(self)  # Ctrl-C / SIGTERM / the GUI's Stop: back up and raise TrainingStopped
                if progress.global_step >= config.training.max_steps:
                    return
            progress.epoch += 1
            progress.epoch_step = 0
            until_stop(lambda: self.sample_hooks.after_epoch(progress.epoch))
            self.step_guard.mark()
            stop_if_requested(self)  # a stop asked for during the epoch's samples: before the next epoch's step

    def _stop_after_the_final_save(self, result: TrainResult, phase: str) -> None:
        """Training is over and saved: a stop skips what is left (the end samples) and needs no backup."""
        if self.stop.requested:
            raise TrainingStopped(
                self.progress.global_step, self.stop.signal_name, None, phase, outputs=result.output_files
            )

    def _forward_backward(self, batch: dict, accumulation: int) -> float:
        self.step_guard.running(batch)
        prediction = self.setup.predict(self.model, batch, self.config, self.progress, self.generator)
        loss = self.setup.calculate_loss(self.model, batch, prediction, self.config)
        self.step_guard.maybe_inject()
        value = self.distributed.mean(loss)  # every process sees the same value, so all stop together
        if not math.isfinite(value):
            raise nonfinite_loss_error(self, batch, value, TrainingError)  # names the data, keeps a backup
        self.accelerator.backward(loss / accumulation)
        return value / accumulation

    def _optimizer_step(self) -> None:
        self.distributed.average_gradients(self.parameters)
        if self.config.training.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.parameters, self.config.training.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.setup.after_optimizer_step(self.model, self.config)  # copies of the weights, e.g. embedding rows

    # ---- outputs -------------------------------------------------------------------------------
    def output_path(self) -> Path:
        if self.config.output.output_path:
            return Path(self.config.output.output_path)
        return self.workspace / "output" / f"{self.config.training_method}.safetensors"

    def save(self, destination: Path) -> list[Path]:
        destination.parent.mkdir(parents=True, exist_ok=True)
        self.backups.before_save()
        # A schedule-free optimizer's averaged weights are the ones to save (a no-op for other optimizers).
        with (
            optimizer_eval_weights(self.optimizer),
            ema_weights_in_use(self.ema),
            self.distributed.full_weights_for_saving(),
        ):
            files = self.plugin.saver().save(self.model, self.config, destination) if self.distributed.is_main else []
        self.distributed.barrier()  # no process runs ahead of a save (a later failure must not cut it short)
        return files

    def _save_on_schedule(self, run_log: RunLog) -> None:
        every = self.config.output.save_every_steps
        step = self.progress.global_step
        if every and step % every == 0 and step < self.config.training.max_steps:
            stem = self.output_path().stem
            files = save_or_keep(self, self.workspace / "save" / f"{stem}-step{step:06d}.safetensors")
            run_log.message(f"step {step}: saved {', '.join(map(str, files))}")

    def sample_all(self, tag: str, run_log: RunLog) -> list[Path]:
        """Write every configured sample now (a failing one is logged and skipped); see sample_hooks.py."""
        return self.sample_hooks.sample(tag)
