"""The report layer: reads runs and results into tables (:mod:`~rpl.report.tables`), figures
(:mod:`~rpl.report.figures`, :mod:`~rpl.report.viz`), the region explorer
(:mod:`~rpl.report.explorer`) and the diagnosis (:mod:`~rpl.report.diagnostics`). It evaluates
trained runs but never trains one (``rpl.experiments`` does)."""
