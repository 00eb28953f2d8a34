"""emo.runtime_bench: latency harnesses that read artifacts and sidecars (never imports emo)."""
