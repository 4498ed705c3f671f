"""Quantization and compression, notebook 08: uniform quantization from first principles and QAT, real int8
models (the flows, the modules they are made of, their engines and files), what an int8 kernel computes (BatchNorm
folding, activation ranges from hooks, integer-only Linear and Conv2d layers), k-means weight sharing, Huffman coding,
and Deep Compression files (pruned + shared + Huffman-coded weights).
"""

from minprune._lazy import lazy_attributes

MODULES = ("uniform", "engines", "int8_modules", "int8", "int8_file", "kmeans", "huffman", "compressed", "folding",
           "ranges", "integer")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
