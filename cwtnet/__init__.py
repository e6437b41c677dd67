"""CWT-Net: cross-scale wavelet Transformer for histopathology super-resolution."""
