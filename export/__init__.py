"""emo.export: one backend per format, every artifact verified against PyTorch."""
