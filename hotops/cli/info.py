"""``hotops info``: versions, threads, GPU status and the data folder."""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.description = "Print versions, thread settings, GPU status and the data folder."


def run(args) -> int:
    from hotops.environment import environment_info, format_info

    print(format_info(environment_info()))
    return 0
