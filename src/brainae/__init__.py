"""brainae: train, tune, compare and inspect convolutional autoencoders on brain MRI."""

__version__ = "0.1.0"
