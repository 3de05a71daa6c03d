#!/usr/bin/env python3
"""Reads a folder of TensorBoard event files with TensorBoard's own reader (EventAccumulator) and
prints every scalar as JSON: {"tag": [[step, value, wall_time], ...], ...}. Keel's TensorBoard tests
run it on the files keel wrote; it needs the `tensorboard` PyPI package (scripts/test.sh installs it
into var/venv)."""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator

accumulator = event_accumulator.EventAccumulator(sys.argv[1], size_guidance={event_accumulator.SCALARS: 0})
accumulator.Reload()
print(json.dumps({tag: [[e.step, e.value, e.wall_time] for e in accumulator.Scalars(tag)]
                  for tag in accumulator.Tags()["scalars"]}, sort_keys=True))
