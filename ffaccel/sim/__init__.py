"""cocotb verification of the generated RTL (docs/architecture.md section 5).

* :mod:`sim.drivers`   reusable stream driver / sink, probe monitor, register writer
* :mod:`sim.bench_engine`  the cocotb test module for the whole engine (runs inside the simulator)
* :mod:`sim.runner`    build-once helpers around ``cocotb_tools.runner`` (Icarus, Verilator)
* :mod:`sim.scoreboard`    comparison of a bench run with the bit-exact golden model

This ``__init__`` imports nothing: the simulator imports ``sim.bench_engine`` and must not
pay for numpy, torch or Amaranth.
"""
