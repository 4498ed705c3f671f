"""Quantization and compression, notebook 08: uniform quantization from first principles and QAT, real int8
models and their engines, k-means weight sharing, Huffman coding, and the bytes sparse formats really take.
"""

from minprune._lazy import lazy_attributes

MODULES = ("uniform", "engines", "int8", "int8_file", "kmeans", "huffman", "compressed", "sparse_storage")
__getattr__, __dir__ = lazy_attributes(__name__, modules=MODULES)
