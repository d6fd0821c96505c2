"""Training objectives, chosen by name from ``LOSSES``.

Every loss is an ``nn.Module`` (so learned parameters such as the negative-binomial dispersion
are trained and checkpointed with it) with four methods the trainer uses:

- ``prepare(x, y) -> (inputs, targets)``: what the model sees and what it is scored against
  (identity, except masked modelling which hides part of the input);
- ``forward(output, targets) -> scalar loss``;
- ``stats(output, targets) -> dict[str, Tensor]``: sums that add over batches and ranks;
- ``score(stats) -> dict[str, float]``: the score named ``score_name`` (higher is better) and
  related numbers, computed from the summed stats.

Decoding. HST-Net's head is linear on the last block's output averaged over the T steps
(and tokens): ``W·mean_t(h_t) + b = mean_t(W·h_t + b)``, i.e. the time-averaged per-step
logits ("rate" decoding), which is also the final membrane potential divided by T of a
non-leaky, non-spiking integrator readout ("membrane" decoding). With this head both are the
same tensor, so ``decoding`` is recorded in the loss for the record and does not change the
computation; a leaky or max-membrane readout would need a different head in the model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hstlab.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")
LN2 = math.log(2.0)


def bits_per_spike(pred_rates: Tensor, counts: Tensor, mean_rates: Tensor, mask: Tensor | None = None) -> float:
    """Poisson log-likelihood gain over a mean-rate model, in bits per spike.

    ``pred_rates`` and ``counts`` share a shape ``[..., C]`` (C neurons); ``mean_rates`` is
    ``[C]`` (each neuron's mean count per bin, the null model). ``mask`` (bool, same shape)
    restricts scoring to the held-out entries. ``log k!`` cancels between the two models.

    Example:
        >>> k = torch.tensor([[0., 2.], [2., 0.]])
        >>> bits_per_spike(k.mean(0).expand(2, 2), k, k.mean(0))
        0.0
    """
    if pred_rates.shape != counts.shape:
        raise ValueError(f"pred_rates shape {tuple(pred_rates.shape)} must equal counts shape {tuple(counts.shape)}")
    if mean_rates.shape != counts.shape[-1:]:
        raise ValueError(f"mean_rates shape {tuple(mean_rates.shape)} must be [C]={tuple(counts.shape[-1:])}")
    weight = torch.ones_like(counts) if mask is None else mask.to(counts.dtype)
    eps = 1e-9
    ll_model = (weight * (counts * torch.log(pred_rates + eps) - pred_rates)).sum()
    null = mean_rates.expand_as(counts)
    ll_null = (weight * (counts * torch.log(null + eps) - null)).sum()
    n_spikes = (weight * counts).sum()
    if n_spikes <= 0:
        raise ValueError("bits_per_spike needs at least one spike among the scored entries")
    return float((ll_model - ll_null) / (n_spikes * LN2))


class TaskLoss(nn.Module):
    """Base: identity ``prepare``; subclasses set ``score_name``."""

    score_name = "accuracy"

    def prepare(self, x: Tensor, y: Any) -> tuple[Tensor, Any]:
        return x, y


@LOSSES.register("cross_entropy")
class CrossEntropyLoss(TaskLoss):
    """Cross-entropy on the model's decoded logits ``[B, K]`` or ``[L, B, K]`` (targets ``[B]`` / ``[L, B]``).

    Example:
        >>> loss = CrossEntropyLoss()
        >>> round(float(loss(torch.zeros(2, 4), torch.tensor([0, 3]))), 4) == round(math.log(4), 4)
        True
    """

    score_name = "accuracy"

    def __init__(self, decoding: str = "rate", label_smoothing: float = 0.0) -> None:
        super().__init__()
        if decoding not in ("rate", "membrane"):
            raise ValueError(f"decoding={decoding!r} is not allowed; allowed: rate, membrane")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing!r} must be in [0, 1)")
        self.decoding = decoding
        self.label_smoothing = label_smoothing

    def forward(self, output: Tensor, targets: Tensor) -> Tensor:
        logits, labels = _flatten_classes(output, targets)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def stats(self, output: Tensor, targets: Tensor) -> dict[str, Tensor]:
        logits, labels = _flatten_classes(output, targets)
        correct = (logits.argmax(-1) == labels).sum().to(torch.float64)
        return {"correct": correct, "count": torch.tensor(float(labels.numel()), dtype=torch.float64)}

    def score(self, stats: dict[str, Tensor]) -> dict[str, float]:
        return {"accuracy": float(stats["correct"] / stats["count"].clamp_min(1))}


@LOSSES.register("tet")
class TETLoss(TaskLoss):
    """Temporal efficient training (TET, Deng et al. 2022) on per-step logits ``O_t`` ``[T, B, K]``:

    ``L = (1/T) Σ_t CE(O_t, y) + λ · (1/T) Σ_t MSE(O_t, φ)``

    (``MSE`` the mean of ``(O_t - φ)²`` over batch and classes). Every step is pushed to classify
    on its own; the MSE term keeps the per-step logits near ``φ`` (``target``). The model must
    return per-step logits in training (``HSTConfig(head="classify_steps")``, which
    :func:`~hstlab.train.run.train_run` sets when the loss is ``"tet"``: :attr:`head`); in
    evaluation it returns their mean ``[B, K]``, which is scored as accuracy (and the loss is the
    formula with T = 1). ``λ`` (``lam``) must be >= 0; 0 is the mean of per-step cross-entropies.

    Example:
        >>> loss = TETLoss(lam=0.5, target=0.0)
        >>> steps = torch.zeros(2, 1, 4)  # T=2, B=1, K=4: uniform logits, CE = ln 4, MSE = 0
        >>> round(float(loss(steps, torch.tensor([1]))), 4) == round(math.log(4), 4)
        True
        >>> float(loss(torch.ones(3, 1, 2), torch.tensor([0])))  # CE ln 2 + 0.5 * MSE 1
        1.1931471824645996
        >>> loss.stats(torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]]), torch.tensor([0]))["correct"].item()  # mean
        1.0
    """

    score_name = "accuracy"
    head = "classify_steps"  # the model head this loss needs (per-step logits in training)

    def __init__(self, lam: float = 0.05, target: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        for name, value in (("lam", lam), ("target", target), ("label_smoothing", label_smoothing)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}={value!r} must be a finite number")
        if lam < 0:
            raise ValueError(f"lam={lam!r} must be a finite number >= 0 (TET's weight of the MSE term)")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing!r} must be in [0, 1)")
        self.lam, self.target, self.label_smoothing = float(lam), float(target), float(label_smoothing)

    def _steps(self, output: Tensor, targets: Tensor) -> Tensor:
        """``output`` as ``[T, B, K]`` (a mean ``[B, K]`` is one step)."""
        if output.dim() == 2:
            return output.unsqueeze(0)
        if output.dim() == 3 and targets.dim() == 1:
            return output
        raise ValueError(f"TET needs per-step logits [T, B, K] (or their mean [B, K]) with labels [B]; got "
                         f"logits {tuple(output.shape)} and labels {tuple(targets.shape)} (a sequence head "
                         "is not supported: use head='classify_steps')")

    def forward(self, output: Tensor, targets: Tensor) -> Tensor:
        steps = self._steps(output, targets)  # [T, B, K]
        T, B, K = steps.shape
        labels = targets.long().repeat(T)  # [T * B], step-major like steps.flatten(0, 1)
        ce = F.cross_entropy(steps.flatten(0, 1), labels, label_smoothing=self.label_smoothing)  # mean over t, b
        if self.lam == 0.0:
            return ce
        return ce + self.lam * (steps - self.target).pow(2).mean()

    def stats(self, output: Tensor, targets: Tensor) -> dict[str, Tensor]:
        logits = self._steps(output, targets).mean(0)  # evaluation stays on the mean  [B, K]
        correct = (logits.argmax(-1) == targets.long()).sum().to(torch.float64)
        return {"correct": correct, "count": torch.tensor(float(targets.numel()), dtype=torch.float64)}

    def score(self, stats: dict[str, Tensor]) -> dict[str, float]:
        return {"accuracy": float(stats["correct"] / stats["count"].clamp_min(1))}


def _flatten_classes(output: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    if output.dim() == 3:  # [L, B, K] with targets [L, B]
        return output.flatten(0, 1), targets.flatten(0, 1).long()
    if output.dim() != 2:
        raise ValueError(f"logits must be [B, K] or [L, B, K], got shape {tuple(output.shape)}")
    return output, targets.long()


class CountLoss(TaskLoss):
    """Base for spike-count targets: the model outputs log-rates with the targets' shape ``[L, B, C]``.

    Scored in bits per spike against each neuron's mean rate over the evaluated split.
    """

    score_name = "bits_per_spike"

    def _split(self, targets: Any) -> tuple[Tensor, Tensor | None]:
        if isinstance(targets, (tuple, list)):
            return targets[0].float(), targets[1]
        return targets.float(), None

    def nll(self, log_rates: Tensor, counts: Tensor) -> Tensor:  # elementwise, [L, B, C]
        raise NotImplementedError

    def forward(self, output: Tensor, targets: Any) -> Tensor:
        counts, mask = self._split(targets)
        _check_same_shape(output, counts)
        nll = self.nll(output, counts)
        if mask is None:
            return nll.mean()
        weight = mask.to(nll.dtype)
        return (nll * weight).sum() / weight.sum().clamp_min(1.0)

    def stats(self, output: Tensor, targets: Any) -> dict[str, Tensor]:
        counts, mask = self._split(targets)
        weight = torch.ones_like(counts) if mask is None else mask.to(counts.dtype)
        rates = output.detach().exp()
        ll = (weight * (counts * output.detach() - rates)).sum().to(torch.float64)
        dims = tuple(range(counts.dim() - 1))
        return {"ll_model": ll,
                "spikes": (weight * counts).sum(dim=dims).to(torch.float64),  # [C]
                "bins": weight.sum(dim=dims).to(torch.float64)}  # [C]

    def score(self, stats: dict[str, Tensor]) -> dict[str, float]:
        spikes, bins = stats["spikes"], stats["bins"]
        mean = spikes / bins.clamp_min(1.0)  # [C]
        ll_null = (spikes * torch.log(mean + 1e-9) - bins * mean).sum()
        total = spikes.sum()
        bps = float((stats["ll_model"] - ll_null) / (total * LN2)) if total > 0 else float("nan")
        return {"bits_per_spike": bps}


def _check_same_shape(output: Tensor, counts: Tensor) -> None:
    if output.shape != counts.shape:
        raise ValueError(f"model output shape {tuple(output.shape)} must equal count target shape "
                         f"{tuple(counts.shape)} (log-rates, one per neuron and bin)")


@LOSSES.register("poisson_nll")
class PoissonNLLLoss(CountLoss):
    """Poisson NLL of counts ``k`` given log-rates ``o``: ``exp(o) - k·o`` (+ ``log k!``, dropped).

    Example:
        >>> loss = PoissonNLLLoss()
        >>> float(loss(torch.zeros(1, 1, 1), torch.ones(1, 1, 1)))
        1.0
    """

    def nll(self, log_rates: Tensor, counts: Tensor) -> Tensor:
        return log_rates.exp() - counts * log_rates


@LOSSES.register("negative_binomial_nll")
class NegativeBinomialNLLLoss(CountLoss):
    """Negative-binomial NLL with mean ``exp(o)`` and a learned dispersion ``r`` (Var = μ + μ²/r).

    ``r = softplus(raw_dispersion)`` is an ``nn.Parameter`` of this module: one per neuron when
    ``num_neurons`` is given, else one shared scalar. The trainer optimizes and checkpoints it.

    Example:
        >>> loss = NegativeBinomialNLLLoss(num_neurons=3)
        >>> loss.raw_dispersion.shape
        torch.Size([3])
    """

    def __init__(self, num_neurons: int | None = None, init_dispersion: float = 1.0) -> None:
        super().__init__()
        if not init_dispersion > 0:
            raise ValueError(f"init_dispersion={init_dispersion!r} must be > 0")
        shape = () if num_neurons is None else (int(num_neurons),)
        raw = init_dispersion + math.log(-math.expm1(-init_dispersion))  # inverse softplus
        self.raw_dispersion = nn.Parameter(torch.full(shape, raw))

    @property
    def dispersion(self) -> Tensor:
        return F.softplus(self.raw_dispersion) + 1e-6

    def nll(self, log_rates: Tensor, counts: Tensor) -> Tensor:
        # float64 inside: lgamma(k + r) - lgamma(r) cancels badly in float32 when r is large
        o, k = log_rates.double(), counts.double()
        r = self.dispersion.double()
        log_r = torch.log(r)
        log_r_mu = torch.logaddexp(log_r.expand_as(o), o)  # log(r + mu)
        ll = (torch.lgamma(k + r) - torch.lgamma(r) - torch.lgamma(k + 1)
              - r * torch.log1p(torch.exp(o - log_r)) + k * (o - log_r_mu))
        return (-ll).to(log_rates.dtype)


@LOSSES.register("masked_modelling")
class MaskedModellingLoss(CountLoss):
    """Hide a fraction of time bins or neurons of spike counts ``x [L, B, C]`` and predict them.

    ``prepare`` zeroes the masked entries of the input (mask drawn from the global torch RNG,
    so checkpoints that store RNG state resume exactly) and returns ``(counts, mask)`` as
    targets; the Poisson (or negative-binomial) NLL and bits per spike count masked entries only.

    Example:
        >>> loss = MaskedModellingLoss(mask_ratio=0.5, mask_axis="neuron")
        >>> x_in, (counts, mask) = loss.prepare(torch.ones(4, 2, 6), None)
        >>> bool(((x_in == 0) == mask).all())
        True
    """

    def __init__(self, mask_ratio: float = 0.25, mask_axis: str = "time", distribution: str = "poisson",
                 num_neurons: int | None = None) -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio={mask_ratio!r} must be in (0, 1)")
        if mask_axis not in ("time", "neuron"):
            raise ValueError(f"mask_axis={mask_axis!r} is not allowed; allowed: time, neuron")
        if distribution not in ("poisson", "negative_binomial"):
            raise ValueError(f"distribution={distribution!r} is not allowed; allowed: poisson, negative_binomial")
        self.mask_ratio = mask_ratio
        self.mask_axis = mask_axis
        self.distribution = distribution
        self.inner = PoissonNLLLoss() if distribution == "poisson" else NegativeBinomialNLLLoss(num_neurons)

    def prepare(self, x: Tensor, y: Any) -> tuple[Tensor, Any]:
        if x.dim() != 3:
            raise ValueError(f"masked modelling needs spike counts [L, B, C], got shape {tuple(x.shape)}")
        L, B, C = x.shape
        shape = (L, B, 1) if self.mask_axis == "time" else (1, B, C)
        mask = (torch.rand(shape, device=x.device) < self.mask_ratio).expand(L, B, C)  # [L, B, C]
        x_in = x.masked_fill(mask, 0.0)
        return x_in, (x, mask)

    def nll(self, log_rates: Tensor, counts: Tensor) -> Tensor:
        return self.inner.nll(log_rates, counts)


def build_loss(name: str | nn.Module = "cross_entropy", **options: Any) -> nn.Module:
    """A loss by registry name (``options`` go to its constructor), or pass a module through."""
    if isinstance(name, nn.Module):
        return name
    return LOSSES.get(name)(**options)
