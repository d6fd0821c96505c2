"""Building blocks of HST-Net: tokenizers, positional encodings, attention kinds, blocks."""
