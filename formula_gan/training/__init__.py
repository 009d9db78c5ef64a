"""Training: losses, the GAN step and loop, checkpoints, logging, distributed set-up."""
