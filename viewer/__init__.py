"""vbnf viewer: window, camera, panel, screenshots, comparisons, live training. Uses engine/ public API only."""
