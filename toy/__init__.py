"""The toy world: small procedural objects, a Zero123 trained on them, and a perfect prior.

It lets the whole generative loop run, be tested and be measured on a CPU, offline, with ground
truth for every view. Libraries: ``objects`` (the objects, their renders, Zero123's camera
formula), ``prior`` (the toy Zero123's architecture, data, training and export), ``oracle`` (a
Zero123 whose denoiser knows the object), ``evaluation`` (a prior's own quality), ``runs``
(image-to-3D runs and their metrics), ``summary`` and ``view_sets`` (how the toy benchmarks judge
runs), ``pictures`` (turntable grids). Commands: ``train_prior.py``, ``eval_prior.py``,
``finetune_decoder.py``, ``plot_curve.py``, ``quickstart_pictures.py``.
"""
