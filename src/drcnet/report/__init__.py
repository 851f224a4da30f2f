"""Reports: the paper's tables and figures for trained runs (Markdown + self-contained HTML).

>>> from drcnet.report import make_report
>>> make_report(["runs/drc", "runs/rc"], "data.h5", "report/")  # doctest: +SKIP
"""

from drcnet.report.build import make_report

__all__ = ["make_report"]
