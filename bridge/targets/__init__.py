"""Where bridged posts go. Only Mastodon for now (``bridge.targets.mastodon``).

Targets are the only code that knows a target library: they take ``Draft``
objects in and raise only the classes of ``bridge.errors``.
"""
