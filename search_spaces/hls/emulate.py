"""Compile a written hls4ml project's bit-accurate emulation and run it, in a process of its own.

The emulation is C++ loaded into the calling process; a configuration it rejects at run time (the
``ap_fixed`` library prints ``[E] …`` and exits) or a crash would take the Celery worker down with it.
The sweep therefore runs this module as a child process: the project is written by the parent (pure
Python), then here ``hls4ml.converters.link_existing_project`` compiles it and predicts the inputs.

    python -m search_spaces.hls.emulate PROJECT_DIR INPUTS.npy OUTPUTS.npy

The parent keeps only stderr and shows its last lines, so a failure here ends stderr with the compiler's
error lines (which hls4ml prints on stdout before raising "Failed to compile project") and the error itself.
"""

from __future__ import annotations

import contextlib
import io
import sys
import traceback

import numpy as np


def compiler_errors(output: str, lines: int = 4) -> list[str]:
    """The last ``lines`` error lines of a compiler's ``output`` (g++ buries them among ap_types warnings), or
    its last lines if none says ``error``."""
    every = [line for line in output.strip().splitlines() if line.strip()]
    errors = [line for line in every if "error:" in line or "Error " in line]
    return (errors or every)[-lines:]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    project, inputs, outputs = argv
    import hls4ml

    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            model = hls4ml.converters.link_existing_project(project)
            model.compile()
            y = model.predict(np.ascontiguousarray(np.load(inputs), dtype=np.float32))
    except Exception as exc:  # noqa: BLE001 - any failure is this trial's, told to the parent on stderr
        traceback.print_exc()
        print("\n".join(compiler_errors(chatter.getvalue())), file=sys.stderr)
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    np.save(outputs, np.asarray(y, dtype=np.float64))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
