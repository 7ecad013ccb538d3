"""Optimiser pieces for the transformer trainer: AdamW that skips non-finite updates, warmup + poly LR."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import _LRScheduler


class NonFiniteGradientError(RuntimeError):
    """Raised when too many consecutive updates had NaN/Inf gradients: the run has diverged."""


class GuardedAdamW(torch.optim.AdamW):
    """AdamW that skips an update whose gradients contain NaN or Inf instead of corrupting the weights.

    Skipped updates are counted in ``skipped_steps``; after ``max_consecutive_skips`` in a row it raises
    :class:`NonFiniteGradientError`. (With fp16 autocast nnU-Net's GradScaler already skips such steps
    before they reach the optimiser; this guard covers fp32 and bf16 training.) Under DDP the gradients it
    checks are already all-reduced, so every rank takes the same decision.
    """

    def __init__(self, params, *args, max_consecutive_skips: int = 25, **kwargs):
        super().__init__(params, *args, **kwargs)
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped_steps = 0
        self._consecutive_skips = 0

    def _gradients_finite(self) -> bool:
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return True
        return bool(torch.stack([g.float().abs().amax() for g in grads]).isfinite().all())

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None and not self._gradients_finite():
            self.skipped_steps += 1
            self._consecutive_skips += 1
            self.zero_grad(set_to_none=True)
            if self._consecutive_skips >= self.max_consecutive_skips:
                raise NonFiniteGradientError(
                    f"{self._consecutive_skips} consecutive updates had NaN/Inf gradients; training diverged. "
                    "Lower the learning rate (initial_lr) or lengthen the warmup.")
            return None
        self._consecutive_skips = 0
        return super().step(closure)


def decay_and_no_decay_groups(network: nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups: weight decay on weight matrices/kernels, none on norms, biases, position embeddings."""
    decay, no_decay = [], []
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name.endswith("pos_embed") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class WarmupPolyLRScheduler(_LRScheduler):
    """Linear warmup over the first ``warmup_iterations``, then nnU-Net's poly decay to 0 at ``total_iterations``.

    Counted in training iterations, so the warmup does not depend on how the iterations are split into
    epochs. nnU-Net calls ``step(epoch)`` at each epoch's start (the learning rate of the epoch's first
    iteration); the trainer calls :meth:`step_iteration` before each iteration. Stateless in the iteration,
    so resuming with ``--c`` continues it.
    """

    def __init__(self, optimizer, initial_lr: float, warmup_iterations: int, total_iterations: int,
                 iterations_per_epoch: int = 1, exponent: float = 0.9):
        self.initial_lr = initial_lr
        self.warmup_iterations = warmup_iterations
        self.total_iterations = total_iterations
        self.iterations_per_epoch = iterations_per_epoch
        self.exponent = exponent
        super().__init__(optimizer, -1)

    def lr_at(self, iteration: int) -> float:
        if iteration < self.warmup_iterations:
            return self.initial_lr * (iteration + 1) / (self.warmup_iterations + 1)
        progress = (iteration - self.warmup_iterations) / max(1, self.total_iterations - self.warmup_iterations)
        return self.initial_lr * max(0.0, 1 - progress) ** self.exponent

    def get_lr(self) -> list[float]:
        return [self.lr_at(max(self.last_epoch, 0))] * len(self.optimizer.param_groups)

    def step_iteration(self, iteration: int) -> None:
        """Set the learning rate of training iteration ``iteration`` (0-based, counted over all epochs)."""
        self.last_epoch = iteration
        lr = self.lr_at(max(iteration, 0))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [lr] * len(self.optimizer.param_groups)

    def step(self, epoch: int | None = None) -> None:
        """nnU-Net's call at an epoch's start: the learning rate of that epoch's first iteration."""
        self.step_iteration(self.last_epoch + 1 if epoch is None else epoch * self.iterations_per_epoch)
