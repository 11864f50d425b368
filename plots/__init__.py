"""Figures and fits of stored grid runs: ``python -m plots --results FILE [--out DIR]``.

Installed as ``jaxattn_plots``. Reads records of the results store
(``jaxattn_bench.store``, which needs no JAX); imports neither JAX nor the
runner. Modules: ``figures`` (figures (a)–(e), (e) when the store holds
``paper_scan`` points, and the fit table), ``fit``
(the least-squares laws), ``report`` (everything written to a folder),
``beyond`` (the figures and tables of ``python -m bench beyond``).
"""

from jaxattn_plots.figures import FIGURES, FitRow, fit_table, format_fit_table
from jaxattn_plots.report import PlotReport, write_report

__all__ = ["FIGURES", "FitRow", "PlotReport", "fit_table", "format_fit_table", "write_report"]
