"""The whole system on one machine: a marketplace and provider agents as separate processes.

Used by `gpumarket demo` and by the full-stack tests (tests/test_fullstack.py).
"""
