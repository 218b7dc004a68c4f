"""Local stand-ins for the platforms, used by ``bridge demo`` and by the tests.

They are real HTTP servers on 127.0.0.1 that answer in the platforms' own
shapes, so the code under test runs unchanged against them.
"""
