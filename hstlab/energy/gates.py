"""Energy counter of spike gates (``gate ⊙ x`` with a binary gate, as in SpikeGPT's token and channel
mixing): one accumulate per gate spike, the gate read as 1 bit per spike and ``x`` at activation width.

Example:
    >>> import torch
    >>> from hstlab.energy import energy_report
    >>> from hstlab.layers.attention.spikegpt import SpikeGate
    >>> class Gated(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__(); self.gate = SpikeGate()
    ...     def forward(self, x):
    ...         return self.gate((x > 0.5).float(), x)
    >>> x = torch.tensor([[[0.9, 0.2, 0.7]]])  # [T, B, D]: two gate spikes
    >>> float(energy_report(Gated(), x, memory=False).layers.set_index("name").loc["gate", "acs"])
    2.0
"""

from __future__ import annotations

from torch import nn

from hstlab.energy.counting import COUNTERS, Counter, nnz, read_bits, time_steps
from hstlab.energy.provenance import REAL, events
from hstlab.energy.stats import total


@COUNTERS.register("spike_gate")
class SpikeGateCounter(Counter):
    """``hstlab.layers.attention.spikegpt.SpikeGate``: one accumulate per gate event per call (``nnz(gate)``
    for 0/1 spikes, ``Σ S`` for I-LIF integer spikes, one per ternary spike; a real-valued
    gate would be a multiply per element and is priced as MACs)."""

    kind = "spike_gate"

    @classmethod
    def matches(cls, module: nn.Module) -> bool:
        from hstlab.layers.attention.spikegpt import SpikeGate

        return isinstance(module, SpikeGate)

    def count(self, tally, module, args, kwargs, output) -> None:
        gate, x = (args + (kwargs.get("gate"), kwargs.get("x")))[:2]
        kind = self.ctx.kind_of(tally, gate)
        binary = kind != REAL
        if binary:  # one accumulate per event: an integer spike S is S, a ternary spike one
            tally.acs += total(events(gate, kind)) if gate.dtype.is_floating_point else float(nnz(gate))
        else:
            tally.macs += float(gate.numel())
        tally.binary_calls += int(binary)
        tally.real_calls += int(not binary)
        tally.in_numel += gate.numel() + x.numel()
        tally.in_nnz += nnz(gate) + nnz(x)
        tally.act_bits += read_bits(gate, binary, self.ctx.act_bits) + x.numel() * self.ctx.act_bits
        tally.out_numel += output.numel()
        tally.out_nnz += nnz(output)
        tally.act_bits += output.numel() * self.ctx.act_bits
        tally.steps += time_steps(x, self.ctx.batch_size)
