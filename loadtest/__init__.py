"""Locust users and benchmarks.

They load a node over the network — the benchmarks start it as a process first
(``idnode demo``, see ``demo_node``) — speaking with the node's own pure codecs
and identifier grammar from ``resolver`` and ``registry``. Where a figure needs
it, a benchmark also reads or fills the node's database directly: ``bench_scale``
bulk-loads identifiers, ``bench_register`` checks what was written, ``hundred_k``
reads the persisted daily counter, ``bench_dns`` picks names. What they need of
the composition root itself (the demo data set, the progress line, the node's DNS
wiring) comes through ``harness``, the only module here that imports ``idnode``.
"""
