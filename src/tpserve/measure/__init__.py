"""The measuring engine: what ``tpserve sweep`` and ``tpserve tune`` measure and how.

:mod:`~tpserve.measure.points` (a layout with its vLLM settings), :mod:`~tpserve.measure.runner` (the
load, a point's servers as a :data:`~tpserve.measure.runner.Backend`, and :func:`measure_point`, which
starts them once and measures them R times into run records) and the backends: :mod:`~tpserve.measure.local`
(``tpserve serve`` on this host) and :mod:`~tpserve.measure.kubernetes` (the Helm chart, with
:mod:`~tpserve.measure.incluster` for its load as Jobs). :mod:`~tpserve.measure.campaign` holds what one
sweep or search shares; ``tpserve.sweep`` (every point of a grid) and ``tpserve.tune`` (a coordinate search)
are the two strategies over a campaign.
"""
