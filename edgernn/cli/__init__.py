"""The ``edgernn`` command line: a thin click face over the library, one module per command
group. Every command registers here on the one group, in the order ``edgernn --help`` knew."""

from __future__ import annotations

from edgernn.cli import convert, data, devices, lab, measure, results, study
from edgernn.cli.app import check_outcome, cli, err, out
from edgernn.cli.entry import main

for _command in (data.datasets, data.train, data.inspect, convert.export, measure.bench,
                 results.results, results.select_cmd, study.compare, study.decision,
                 results.report, devices.targets, lab.sweep, lab.demo):
    cli.add_command(_command)
del _command

__all__ = ["check_outcome", "cli", "err", "main", "out"]
