"""Benchmark: multi-step LIF forward+backward, hstlab's fused kernel vs snnTorch and SpikingJelly.

hstlab runs its compiled loops (numba on the CPU, Triton with ``--device cuda``) and, as
"hstlab-torch", its pure-torch loops.

All implementations run the same model (tau=2 -> beta=0.5, threshold 1, hard/zero reset with a
detached reset, input not decayed, ATan surrogate alpha=2) on the same input; the script checks
that their spikes are identical before timing. Timings are interleaved (each repeat runs every
implementation once, in rotating order) so machine noise hits all of them alike; medians are
reported with ns per neuron-step and ratios measured in the same run (minimums too: on a
shared machine the minimum is the best estimate of the uncontended cost) and the median CPU
time of all the process's threads per call (which does not count time spent descheduled).

``--family`` instead times hstlab's LIF, PLIF (one tau, and one per channel) and ALIF on their
compiled loops and on the torch loops, with ratios to LIF, against snnTorch ``Leaky(learn_beta=True)``
and SpikingJelly ``ParametricLIFNode`` (the same PLIF work: a learnable decay, its gradient
included) and, for ALIF (neither library has an adaptive-threshold LIF), a per-step autograd
loop written the way snnTorch's documented loop is.

``--baseline FILE`` also times hstlab's compiled loops with the numba kernels of FILE (a saved
copy of ``hstlab/neurons/_compiled_kernels.py``, e.g. from ``git show main:...``) as extra rows
ending in ``-base``, interleaved with the others: a before/after comparison in one run.

Usage:
    python benchmarks/bench_neurons.py [--T 16 --B 32 --N 4096 --threads 2 --repeat 25] [--json out.json]
    python benchmarks/bench_neurons.py --family [--repeat 15] [--baseline old_kernels.py]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP; see hstlab/__init__.py

import argparse
import contextlib
import functools
import importlib.util
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from hstlab.neurons import ALIF, LIF, PLIF, _compiled, _gpu, kernels, spike
from hstlab.neurons._compiled import AVAILABLE as COMPILED_AVAILABLE
from hstlab.runtime import cpu_model
from hstlab.train.distributed import check_device

TAU, THRESHOLD, ALPHA = 2.0, 1.0, 2.0


def make_hstlab(backend: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """hstlab's fused LIF with the given loops ("compiled": numba, "torch": pure torch)."""
    lif = LIF(tau=TAU, threshold=THRESHOLD, reset="hard", surrogate="atan", alpha=ALPHA,
              detach_reset=True, decay_input=False).to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        previous = kernels.set_backend(backend)  # read by the forward; the backward follows it
        try:
            lif.reset_state()
            return lif(x)
        finally:
            kernels.set_backend(previous)

    return run


BETA_A, TAU_A = 0.2, 20.0  # ALIF adaptation in the --family run


def make_family(kind: str, backend: str, device: torch.device, channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """hstlab LIF / PLIF / PLIF per channel / ALIF on the given loops (same tau, threshold, reset)."""
    opts = {"tau": TAU, "threshold": THRESHOLD, "reset": "hard", "surrogate": "atan", "alpha": ALPHA,
            "detach_reset": True, "decay_input": False}
    if kind == "lif":
        neuron = LIF(**opts)
    elif kind == "alif":
        neuron = ALIF(**opts, beta_a=BETA_A, tau_a=TAU_A)
    else:
        neuron = PLIF(**opts, channels=None if kind == "plif" else channels)
    neuron = neuron.to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        previous = kernels.set_backend(backend)
        try:
            neuron.reset_state()
            return neuron(x)
        finally:
            kernels.set_backend(previous)

    return run


def make_alif_step_loop(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """ALIF as a per-step autograd loop (snnTorch's documented style; no library ships this neuron)."""
    k, rho = 1 - 1 / TAU, 1 - 1 / TAU_A

    def run(x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x[0])
        a = torch.zeros_like(x[0])
        spikes = []
        for step in range(x.shape[0]):
            h = k * v + x[step]
            s = spike(h - (THRESHOLD + a), "atan", ALPHA)
            v = h * (1 - s.detach())
            a = rho * a + BETA_A * s.detach()
            spikes.append(s)
        return torch.stack(spikes)

    return run


def make_snntorch(device: torch.device, learn_beta: bool = False) -> Callable[[torch.Tensor], torch.Tensor] | str:
    """snnTorch's Leaky in its documented step loop; ``learn_beta``: a learnable decay
    (beta = 1 - 1/tau), PLIF's work."""
    try:
        import snntorch as snn
        from snntorch import surrogate
    except ImportError:
        return "not installed"
    leaky = snn.Leaky(beta=1 - 1 / TAU, threshold=THRESHOLD, reset_mechanism="zero", learn_beta=learn_beta,
                      spike_grad=surrogate.atan(alpha=ALPHA)).to(device)

    def run(x: torch.Tensor) -> torch.Tensor:  # the documented step loop
        mem = leaky.init_leaky()
        spikes = []
        for step in range(x.shape[0]):
            spk, mem = leaky(x[step], mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return run


def make_spikingjelly(device: torch.device, parametric: bool = False) -> Callable[[torch.Tensor], torch.Tensor] | str:
    """SpikingJelly's multi-step LIFNode, or its ParametricLIFNode with ``parametric`` (2.x picks
    its own CUDA/Triton kernels on a GPU)."""
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except ImportError:
        return "not installed"
    common = dict(decay_input=False, v_threshold=THRESHOLD, v_reset=0.0,
                  surrogate_function=surrogate.ATan(alpha=ALPHA), detach_reset=True, step_mode="m")
    node = (neuron.ParametricLIFNode(init_tau=TAU, **common) if parametric
            else neuron.LIFNode(tau=TAU, **common)).to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(node)
        return node(x)

    return run


def load_baseline(path: str):
    """The kernels module saved at ``path`` (its numba cache sits next to it)."""
    spec = importlib.util.spec_from_file_location("hstlab_baseline_kernels", path)
    if spec is None or spec.loader is None:
        raise ValueError("not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's cache finds the module of a cached kernel by name
    spec.loader.exec_module(module)
    missing = [n for n in ("lif_fwd", "lif_bwd", "plif_fwd", "plif_bwd", "alif_fwd", "alif_bwd")
               if not hasattr(module, n)]
    if missing:
        raise ValueError(f"has no {', '.join(missing)}; allowed: a copy of hstlab/neurons/_compiled_kernels.py")
    return module


def with_kernels(run: Callable, module) -> Callable:
    """``run`` whose calls (forward and backward, see ``_context``) use ``module``'s kernels."""

    @contextlib.contextmanager
    def swapped():
        saved = _compiled._kernels, _compiled._kernel
        _compiled._kernels = lambda: (module.lif_fwd, module.lif_bwd)
        _compiled._kernel = lambda name: getattr(module, name)
        try:
            yield
        finally:
            _compiled._kernels, _compiled._kernel = saved

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        return run(x)

    wrapped.context = swapped  # type: ignore[attr-defined]
    return wrapped


def _context(run: Callable):
    return getattr(run, "context", contextlib.nullcontext)()


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__




def _time(fn: Callable[[], None], sync: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all this process's threads) of one call, ``sync`` waiting for the device."""
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=16)
    parser.add_argument("--B", type=int, default=32)
    parser.add_argument("--N", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the numba loops are CPU-only)")
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--family", action="store_true",
                        help="time LIF, PLIF and ALIF (CPU) against snnTorch/SpikingJelly PLIF and an ALIF step loop")
    parser.add_argument("--baseline", metavar="FILE",
                        help="also time hstlab's loops with the numba kernels saved in FILE (rows *-base)")
    parser.add_argument("--json", metavar="PATH", help="save the results as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be >= 1 and --warmup >= 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        device = check_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    shape = (args.T, args.B, args.N)
    x = (torch.randn(shape) * 0.8 + 0.4).to(device).requires_grad_(True)
    grad_out = torch.randn(shape).to(device)
    neuron_steps = args.T * args.B * args.N

    impls: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    skipped: dict[str, str] = {}
    same_as: dict[str, str] = {}  # implementation -> the one whose spikes and gradients it must match
    if args.family:
        if device.type != "cpu" or not COMPILED_AVAILABLE:
            parser.error("--family times the numba loops: needs --device cpu and numba")
        loops = "numba"
        for kind in ("lif", "plif", "plif-channel", "alif"):
            impls[kind] = make_family(kind, "compiled", device, args.N)
        for kind in ("plif", "alif"):
            impls[f"{kind}-torch"] = make_family(kind, "torch", device, args.N)
            same_as[f"{kind}-torch"] = kind
        same_as.update({"plif": "lif", "plif-channel": "lif", "alif": "alif"})  # ALIF: its own reference
        for name, factory in (("snntorch-plif", functools.partial(make_snntorch, learn_beta=True)),
                              ("sj-plif", functools.partial(make_spikingjelly, parametric=True))):
            made = factory(device)
            if isinstance(made, str):
                skipped[name] = made
            else:
                impls[name], same_as[name] = made, "plif"
        impls["alif-steploop"], same_as["alif-steploop"] = make_alif_step_loop(device), "alif"
    elif device.type != "cpu":
        loops = "Triton" if _gpu.usable(x) else "torch (Triton unavailable)"
        impls["hstlab"] = make_hstlab("auto", device)  # the Triton loops when usable, else the torch loops
        impls["hstlab-torch"] = make_hstlab("torch", device)
    elif COMPILED_AVAILABLE:
        loops = "numba"
        impls["hstlab"] = make_hstlab("compiled", device)
        impls["hstlab-torch"] = make_hstlab("torch", device)
    else:
        loops = "torch"
        skipped["hstlab"] = "compiled loops need numba: not installed"
        impls["hstlab-torch"] = make_hstlab("torch", device)
    for name, factory in (("snntorch", make_snntorch), ("spikingjelly", make_spikingjelly)):
        made = factory(device)
        if isinstance(made, str):
            skipped[name] = made
        else:
            impls[name] = made
    if args.baseline:
        if loops != "numba":
            parser.error("--baseline compares numba kernels: needs --device cpu and numba")
        try:
            base = load_baseline(args.baseline)
        except (OSError, ValueError, SyntaxError) as err:
            parser.error(f"--baseline {args.baseline!r}: {err}")
        for name in ("lif", "plif", "plif-channel", "alif") if args.family else ("hstlab",):
            impls[f"{name}-base"] = with_kernels(impls[name], base)
            same_as[f"{name}-base"] = name

    # same maths: identical spikes and (to float32 rounding) identical input gradients
    first = next(iter(impls))
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    checks: dict[str, dict[str, float | bool]] = {}
    for name, run in impls.items():
        with _context(run):
            spikes = run(x)
            (grad,) = torch.autograd.grad(spikes, x, grad_out)
        outputs[name] = (spikes.detach(), grad)
        ref_spikes, ref_grad = outputs[same_as.get(name, first)]
        checks[name] = {
            "against": same_as.get(name, first),
            "spikes_identical": bool(torch.equal(spikes.detach(), ref_spikes)),
            "max_grad_diff": float((grad - ref_grad).abs().max()),
        }
    del outputs

    def fwd_bwd(run: Callable) -> Callable[[], None]:
        def step() -> None:
            x.grad = None
            with _context(run):
                run(x).backward(grad_out)
        return step

    def fwd_only(run: Callable) -> Callable[[], None]:
        def step() -> None:
            with torch.no_grad(), _context(run):
                run(x)
        return step

    results: dict[str, dict[str, float]] = {}
    for mode, wrap in (("fwd_bwd", fwd_bwd), ("fwd", fwd_only)):
        steps = {name: wrap(run) for name, run in impls.items()}
        for step in steps.values():
            for _ in range(args.warmup):
                step()
        samples: dict[str, list[float]] = {name: [] for name in steps}
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        names = list(steps)
        for i in range(args.repeat):
            for name in names[i % len(names):] + names[: i % len(names)]:
                wall, used = _time(steps[name], sync)
                samples[name].append(wall)
                cpu[name].append(used)
        for name, ts in samples.items():
            median = statistics.median(ts)
            entry = results.setdefault(name, {})
            entry[f"{mode}_median_ms"] = median * 1e3
            entry[f"{mode}_min_ms"] = min(ts) * 1e3
            entry[f"{mode}_cpu_median_ms"] = statistics.median(cpu[name]) * 1e3
            entry[f"{mode}_ns_per_neuron_step"] = median / neuron_steps * 1e9
    for entry in results.values():
        for mode in ("fwd_bwd", "fwd"):
            ours = results[next(iter(results))]  # hstlab (compiled if numba is there)
            entry[f"{mode}_speedup_of_hstlab"] = entry[f"{mode}_median_ms"] / ours[f"{mode}_median_ms"]
            entry[f"{mode}_speedup_of_hstlab_min"] = entry[f"{mode}_min_ms"] / ours[f"{mode}_min_ms"]

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"threads={torch.get_num_threads()}"
    print(f"CPU {cpu_model()}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min)")
    print(f"{'LIF, PLIF, ALIF' if args.family else 'LIF'} T={args.T} B={args.B} N={args.N} ({neuron_steps:,} neuron-steps), "
          f"torch {torch.__version__}, {args.device} ({where}), repeat={args.repeat}; hstlab runs {loops} loops")
    header = (f"{'impl':<18}{'fwd+bwd ms':>12}{'ns/n-step':>11}{'x slower':>10}{'min ms':>9}{'x (min)':>9}"
              f"{'cpu ms':>9}{'fwd ms':>9}{'x slower':>10}  check")
    print(header)
    print("-" * len(header))
    for name, e in results.items():
        c = checks[name]
        print(f"{name:<18}{e['fwd_bwd_median_ms']:>12.2f}{e['fwd_bwd_ns_per_neuron_step']:>11.2f}"
              f"{e['fwd_bwd_speedup_of_hstlab']:>10.1f}{e['fwd_bwd_min_ms']:>9.2f}"
              f"{e['fwd_bwd_speedup_of_hstlab_min']:>9.1f}{e['fwd_bwd_cpu_median_ms']:>9.2f}"
              f"{e['fwd_median_ms']:>9.2f}{e['fwd_speedup_of_hstlab']:>10.1f}"
              f"  vs {c['against']}: spikes identical={c['spikes_identical']}, "
              f"max |dgrad|={c['max_grad_diff']:.1e}")
    for name, why in skipped.items():
        print(f"{name:<18}{why}")
    if args.family:
        pairs = [("plif", "lif"), ("plif-channel", "lif"), ("alif", "lif"), ("snntorch-plif", "plif"),
                 ("sj-plif", "plif"), ("plif-torch", "plif"), ("alif-torch", "alif"), ("alif-steploop", "alif"),
                 ("snntorch", "lif"), ("spikingjelly", "lif"), ("plif-base", "lif-base"),
                 ("plif-channel-base", "lif-base"), ("alif-base", "lif-base")]
        pairs += [(f"{n}-base", n) for n in ("lif", "plif", "plif-channel", "alif")]
        for name, ref in pairs:
            if name in results and ref in results:
                ratio = results[name]["fwd_bwd_median_ms"] / results[ref]["fwd_bwd_median_ms"]
                cpu_ratio = results[name]["fwd_bwd_cpu_median_ms"] / results[ref]["fwd_bwd_cpu_median_ms"]
                results[name][f"fwd_bwd_ratio_to_{ref}"] = ratio
                results[name][f"fwd_bwd_cpu_ratio_to_{ref}"] = cpu_ratio
                target = "  (target <= 1.2)" if ref in ("lif", "lif-base") and name[0] in "pa" else ""
                print(f"fwd+bwd {name} / {ref}: {ratio:.2f}x (cpu time {cpu_ratio:.2f}x){target}")

    report = {
        "load_average": os.getloadavg(), "cpu_model": cpu_model(),
        "config": {"family": args.family, "T": args.T, "B": args.B, "N": args.N, "threads": args.threads, "device": args.device,
                   "repeat": args.repeat,
                   "warmup": args.warmup, "tau": TAU, "threshold": THRESHOLD, "alpha": ALPHA},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "processor": platform.processor(), "hstlab_loops": loops,
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                        "triton": _triton_version()},
        "results": results, "checks": checks, "skipped": skipped,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"saved {args.json}")
    return report


if __name__ == "__main__":
    main()
