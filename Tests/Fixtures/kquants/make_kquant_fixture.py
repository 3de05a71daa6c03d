#!/usr/bin/env python3
"""Random GGUF K-quant blocks and their dequantisation by the `gguf` PyPI package (the reference the
tests compare Keel's dequantisers with).

Usage (in a venv outside the repository): pip install gguf==0.19.0 numpy; python make_kquant_fixture.py > kquants.json
For each type Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K: 3 blocks of random bytes, with the scale fields (f16 d and
dmin, f32 d for Q8_K) replaced by random finite values so no block decodes to inf/NaN; the bytes as hex and
gguf.quants.dequantize's float32 output. gguf 0.19 does not dequantise Q8_K (only llama.cpp's dot products
use it); its values are ggml-quants.c's `dequantize_row_q8_K`, y = d · qs, written out in numpy below.
"""
import json
import numpy as np
from gguf import GGMLQuantizationType as Q, quants

rng = np.random.default_rng(20)
# (type, block bytes, [(byte offset, kind) of each scale field])
layouts = [
    (Q.Q2_K, 84, [(80, "f16"), (82, "f16")]),
    (Q.Q3_K, 110, [(108, "f16")]),
    (Q.Q4_K, 144, [(0, "f16"), (2, "f16")]),
    (Q.Q5_K, 176, [(0, "f16"), (2, "f16")]),
    (Q.Q6_K, 210, [(208, "f16")]),
    (Q.Q8_K, 292, [(0, "f32")]),
]
out = {}
for qtype, size, fields in layouts:
    blocks = rng.integers(0, 256, size=(3, size), dtype=np.uint8)
    for block in blocks:
        for offset, kind in fields:
            value = rng.normal() * 0.05
            raw = np.array([value], dtype=np.float16 if kind == "f16" else np.float32).view(np.uint8)
            block[offset:offset + len(raw)] = raw
    if qtype == Q.Q8_K:
        d = blocks[:, 0:4].copy().view(np.float32)            # [3, 1]
        qs = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
        values = (d * qs).reshape(-1)
    else:
        values = quants.dequantize(blocks.reshape(-1), qtype).reshape(-1).astype(np.float32)
    out[qtype.name] = {"hex": blocks.tobytes().hex(), "values": [float(v) for v in values]}
print(json.dumps(out))
