"""``hstlab data list | build NAME | info NAME``: mounted by ``hstlab/cli.py`` via ``register``."""

from __future__ import annotations

import argparse
import json
import sys


def _list(args: argparse.Namespace) -> int:
    from hstlab.data import registry as reg

    for name in reg.list_datasets():
        spec = reg.DATASETS.get(name)
        where = "in memory" if not spec.on_disk else str(reg.dataset_folder(name))
        print(f"{name:14s} {spec.kind:14s} {spec.description}  [{where}]")
    return 0


def _build(args: argparse.Namespace) -> int:
    from hstlab.data import registry as reg

    spec = reg.DATASETS.get(args.name)
    folder = reg.dataset_folder(args.name, args.root)
    if args.name == "digits-dvs":
        meta = reg.ensure_digits_dvs(folder, seed=args.seed, build=True, verbose=True)
        print(f"digits-dvs ready in {folder} ({meta['n_samples']} samples, seed {meta['seed']})")
        _print_stats(reg.dataset_info(args.name, args.root))
        return 0
    if not spec.on_disk:
        print(f"{args.name} is generated in memory on load; nothing to build")
        return 0
    # real datasets: check the files (and bin the train split's frames into the cache); a missing
    # dataset (DatasetUnavailable) is a user error: one line from hstlab.cli, exit status 2
    for split in reg.SPLITS:
        ds = reg.load_dataset(args.name, split, args.root, download=args.download)
        print(f"{args.name} {split}: {len(ds)} samples, x {list(ds[0][0].shape)}")
    return 0


def _print_stats(info: dict) -> None:
    stats = info.get("event_stats")
    if stats:
        print(
            f"events per sample: mean {stats['events_per_sample_mean']:.0f} "
            f"(std {stats['events_per_sample_std']:.0f}, min {stats['events_per_sample_min']}, "
            f"max {stats['events_per_sample_max']}); ON fraction {stats['on_fraction']:.3f}; "
            f"built in {stats['build_seconds']} s ({stats.get('build_cpu_seconds', '?')} s CPU)"
        )


def _info(args: argparse.Namespace) -> int:
    from hstlab.data import registry as reg

    info = reg.dataset_info(args.name, args.root)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    for key, value in info.items():
        if key in ("event_stats", "classes") and isinstance(value, (dict, list)):
            continue
        text = str(value)
        print(f"{key:18s} {text if chr(10) not in text else chr(10) + text}")
    if isinstance(info.get("classes"), list):
        print(f"{'classes':18s} {', '.join(map(str, info['classes']))}")
    _print_stats(info)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` with sub-commands ``list``, ``build``, ``info``.

    Dataset names are checked by the registry when a command runs (an unknown name gets the
    list), so building the parser imports no data code.
    """
    data = subparsers.add_parser("data", help="list, build and describe datasets")
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("list", help="known datasets")
    p.set_defaults(func=_list)
    p = sub.add_parser("build", help="generate digits-dvs / check and cache a real dataset")
    p.add_argument("name", help="dataset name (hstlab data list)")
    p.add_argument("--root", default=None, help="dataset folder (default: data/<name>)")
    p.add_argument("--seed", type=int, default=0, help="digits-dvs generator seed")
    p.add_argument("--download", action="store_true", help="let tonic download if it can")
    p.set_defaults(func=_build)
    p = sub.add_parser("info", help="sensor, classes, splits, sizes, files, event statistics")
    p.add_argument("name", help="dataset name (hstlab data list)")
    p.add_argument("--root", default=None, help="dataset folder (default: data/<name>)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m hstlab.data.cli list``)."""
    parser = argparse.ArgumentParser(prog="hstlab")
    register(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv if argv[:1] == ["data"] else ["data", *argv])
    from hstlab.cli import run_command

    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
