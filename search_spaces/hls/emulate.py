"""Compile a written hls4ml project's bit-accurate emulation and run it, in a process of its own.

The emulation is C++ loaded into the calling process; a configuration it rejects at run time (the
``ap_fixed`` library prints ``[E] …`` and exits) or a crash would take the Celery worker down with it.
The sweep therefore runs this module as a child process: the project is written by the parent (pure
Python), then here ``hls4ml.converters.link_existing_project`` compiles it and predicts the inputs.

    python -m search_spaces.hls.emulate PROJECT_DIR INPUTS.npy OUTPUTS.npy
"""

from __future__ import annotations

import contextlib
import io
import sys

import numpy as np


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    project, inputs, outputs = argv
    import hls4ml

    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        model = hls4ml.converters.link_existing_project(project)
        model.compile()
        y = model.predict(np.ascontiguousarray(np.load(inputs), dtype=np.float32))
    np.save(outputs, np.asarray(y, dtype=np.float64))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
