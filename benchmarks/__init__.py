"""Benchmarks: one ``bench_*.py`` command per measurement, each writing JSON into bench_results/;
``report.py`` turns those files into BENCHMARKS.md's tables (``python docs/build.py``)."""
