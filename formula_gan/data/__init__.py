"""The data layer: InkML, rasterization, shards, vocabularies, loaders, augmentation, exports."""
