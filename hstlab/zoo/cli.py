"""``hstlab zoo``: list, describe, check and rebuild the shipped trained models."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("zoo", help="trained models shipped with hstlab (list, info, check, rebuild)")
    sub = p.add_subparsers(dest="zoo_command", required=True)
    q = sub.add_parser("list", help="names, data and test scores of the shipped models")
    q.set_defaults(func=cmd_list)
    q = sub.add_parser("info", help="the full JSON record of one entry")
    q.add_argument("name")
    q.set_defaults(func=cmd_info)
    q = sub.add_parser("check", help="score an entry's shipped weights on the built-in data; compare with its record")
    q.add_argument("name")
    q.set_defaults(func=cmd_check)
    q = sub.add_parser("rebuild", help="retrain an entry with its recorded command into a new folder")
    q.add_argument("name")
    q.add_argument("--out", required=True, help="empty folder for the run and the new entry files")
    q.set_defaults(func=cmd_rebuild)
    q = sub.add_parser("run-dir", help="write an entry as a run directory (for hstlab energy/card and Load run)")
    q.add_argument("name")
    q.add_argument("--out", required=True, help="new (or empty) run directory")
    q.set_defaults(func=cmd_run_dir)


def _score(metrics: dict[str, float]) -> str:
    key = next((k for k in ("test_accuracy", "test_bits_per_spike") if metrics.get(k) is not None), None)
    return f"{key.removeprefix('test_')} {metrics[key]:.4f}" if key else "no score"


def cmd_list(args: argparse.Namespace) -> int:
    from hstlab.zoo import list_pretrained, pretrained_record

    for name in list_pretrained():
        record = pretrained_record(name)
        print(f"{name:34s} {record.dataset:14s} test {_score(record.metrics):24s} {record.description}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from hstlab.zoo import pretrained_record

    print(json.dumps(pretrained_record(args.name).to_dict(), indent=1, sort_keys=True))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from hstlab.zoo import pretrained_record
    from hstlab.zoo.build import evaluate_entry

    record = pretrained_record(args.name)
    metrics, fingerprint = evaluate_entry(record)
    same_data = fingerprint == record.data_sha256
    same = same_data and all(metrics.get(k) == v for k, v in record.metrics.items())
    print(f"{args.name}: {_score(metrics)} (record: {_score(record.metrics)}); "
          f"test data {'identical' if same_data else 'DIFFERENT from the record'}; "
          f"{'reproduced exactly' if same else 'NOT reproduced'}")
    return 0 if same else 1


def cmd_rebuild(args: argparse.Namespace) -> int:
    from hstlab.zoo.build import rebuild_entry

    record = rebuild_entry(args.name, args.out)
    print(f"rebuilt {args.name} into {args.out}: {_score(record.metrics)}")
    return 0


def cmd_run_dir(args: argparse.Namespace) -> int:
    from hstlab.zoo.build import materialize_run

    path = materialize_run(args.name, args.out)
    print(f"wrote {args.name} as run directory {path} (try: hstlab card {path})")
    return 0
