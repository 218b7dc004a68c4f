"""Sources of X posts: the X API v2 client and the X archive reader."""
