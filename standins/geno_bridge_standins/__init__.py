"""Local stand-ins for the platforms, used by ``bridge demo``, the tests and the benchmarks.

They are real HTTP servers on 127.0.0.1 that answer in the platforms' own
shapes, so the code under test runs unchanged against them. They live in their
own distribution (geno-bridge-standins, this folder) so the runtime package and
its Docker image carry no test servers: ``python3 dev.py`` installs both.
"""
