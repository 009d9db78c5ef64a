"""Neural networks: GAN layers, generator, discriminator, DenseNet encoder, attention decoders.

Models import torch only; vocabularies arrive as sizes, never as data-layer objects.
"""
