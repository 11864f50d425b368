"""The experiments over jaxattn: presets, the grid runner, the results store, hosts, benchmarks.

Installed as ``jaxattn_bench``; the commands over it are ``jaxattn_bench.commands``
(``jaxattn COMMAND`` or ``python -m bench COMMAND``). Importing this package
or its ``store`` loads no JAX.
"""
