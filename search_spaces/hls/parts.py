"""Capacities of common FPGA parts, so resource estimates can be given as a share of the chosen device.

Figures are taken from the vendors' product tables (AMD/Xilinx UltraScale, UltraScale+, Zynq-7000 and
Zynq UltraScale+ product selection guides) and not re-checked here, except the Alveo U250 line, which
equals the "Available" row of the real Vivado HLS report in ``tests/fixtures/vivado``: DSP slices, CLB
LUTs, CLB flip-flops and block RAM counted in 18 Kb halves (one 36 Kb block = two ``BRAM_18K``, the unit
HLS reports use).

Each part also names its DSP slice, because the multiplier inside it differs by family: the DSP48E1 of the
7-series (Zynq-7000, Artix/Kintex/Virtex-7) multiplies 25 × 18 bits (UG479, "7 Series DSP48E1 Slice"), the
DSP48E2 of UltraScale and UltraScale+ (Kintex/Virtex UltraScale(+), Zynq UltraScale+, Alveo) 27 × 18 bits
(UG579, "UltraScale Architecture DSP Slice"); both are two's-complement multipliers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Part:
    key: str
    part: str
    family: str
    description: str
    dsp: int
    lut: int
    ff: int
    bram_18k: int
    dsp_slice: str = "DSP48E2"

    @property
    def dsp_multiplier_bits(self) -> tuple[int, int]:
        """The signed operand widths one DSP slice of this part multiplies (wide port, narrow port)."""
        return DSP_MULTIPLIER_BITS[self.dsp_slice]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DSP_MULTIPLIER_BITS: dict[str, tuple[int, int]] = {"DSP48E1": (25, 18), "DSP48E2": (27, 18)}

PARTS: dict[str, Part] = {
    p.key: p
    for p in (
        Part(
            "xcku115",
            "xcku115-flvb2104-2-i",
            "Kintex UltraScale",
            "KU115, the hls4ml paper's jet-tagger target",
            dsp=5520,
            lut=663_360,
            ff=1_326_720,
            bram_18k=4320,
        ),
        Part(
            "xczu3eg",
            "xczu3eg-sbva484-1-e",
            "Zynq UltraScale+",
            "ZU3EG (Ultra96 and similar boards)",
            dsp=360,
            lut=70_560,
            ff=141_120,
            bram_18k=432,
        ),
        Part(
            "xcvu9p",
            "xcvu9p-flga2104-2L-e",
            "Virtex UltraScale+",
            "VU9P (CMS/ATLAS trigger boards, AWS F1)",
            dsp=6840,
            lut=1_182_240,
            ff=2_364_480,
            bram_18k=4320,
        ),
        Part(
            "xcu250",
            "xcu250-figd2104-2L-e",
            "Alveo",
            "Alveo U250 accelerator card",
            dsp=12288,
            lut=1_728_000,
            ff=3_456_000,
            bram_18k=5376,
        ),
        Part(
            "xcu55c",
            "xcu55c-fsvh2892-2L-e",
            "Alveo",
            "Alveo U55C accelerator card",
            dsp=9024,
            lut=1_303_680,
            ff=2_607_360,
            bram_18k=4032,
        ),
        Part(
            "xc7z020",
            "xc7z020clg400-1",
            "Zynq-7000",
            "Z-7020 (PYNQ-Z2 and similar boards)",
            dsp=220,
            lut=53_200,
            ff=106_400,
            bram_18k=280,
            dsp_slice="DSP48E1",
        ),
    )
}

CHOICES = sorted(PARTS)


def get_part(name: str) -> Part:
    """The part whose key or full part name matches ``name`` (a full name with another speed grade or
    package matches by its device prefix, e.g. ``xcku115-flva1517-1-c``); ``KeyError`` if unknown."""
    lowered = name.strip().lower()
    if lowered in PARTS:
        return PARTS[lowered]
    for part in PARTS.values():
        if lowered == part.part.lower() or lowered.startswith(part.key):
            return part
    raise KeyError(f"unknown FPGA part {name!r}; known: {', '.join(p.part for p in PARTS.values())}")


def utilisation(part: Part, *, dsp: float, lut: float, ff: float, bram_18k: float) -> dict[str, float]:
    """Percent of the part's capacity per resource, rounded to 0.01 %."""
    return {
        "dsp": round(100.0 * dsp / part.dsp, 2),
        "lut": round(100.0 * lut / part.lut, 2),
        "ff": round(100.0 * ff / part.ff, 2),
        "bram": round(100.0 * bram_18k / part.bram_18k, 2),
    }
