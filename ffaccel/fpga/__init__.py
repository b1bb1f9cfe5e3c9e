"""FPGA implementation of the generated engine (``python -m ffaccel.fpga``)."""
