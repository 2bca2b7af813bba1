"""Training token compressors on real ViT tokens."""
