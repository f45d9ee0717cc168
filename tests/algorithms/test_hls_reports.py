"""Synthesis-report import: the parsed numbers equal what the real Vivado/Vivado HLS files say, archives
of report directories are read, hostile or wrong files are refused with a clear error."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from search_spaces.hls.reports import ReportError, parse_csynth_xml, read_upload

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vivado"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "dsp", "lut", "ff", "bram", "util_dsp", "util_lut"),
    [
        ("pruned_cnn_csynth.rpt", 5414, 245466, 52549, 100, 44, 14),
        ("quantized_pruned_cnn_csynth.rpt", 340, 263280, 43847, 100, 2, 15),
    ],
)
def test_csynth_rpt_numbers_equal_the_file(
    name: str, dsp: int, lut: int, ff: int, bram: int, util_dsp: int, util_lut: int
) -> None:
    [report] = read_upload(name, fixture(name))
    assert report.source == "vivado_hls"
    assert report.part == "xcu250-figd2104-2L-e"
    assert report.clock_period_ns == 5.0
    assert (report.dsp, report.lut, report.ff, report.bram) == (dsp, lut, ff, bram)
    assert (report.latency_cycles, report.latency_ns, report.initiation_interval) == (1044, 5220.0, 1028)
    assert report.utilisation["dsp"] == util_dsp and report.utilisation["lut"] == util_lut
    assert report.raw["available"]["DSP48E"] == 12288 and report.raw["pipeline"] == "dataflow"


@pytest.mark.parametrize(
    ("name", "lut", "ff", "tiles", "dsp", "util_lut", "util_dsp"),
    [
        ("pruned_cnn_vivado_synth.rpt", 123948, 43435, 42, 5386, 7.17, 43.83),
        ("quantized_pruned_cnn_vivado_synth.rpt", 118931, 30702, 34, 353, 6.88, 2.87),
    ],
)
def test_vivado_synth_numbers_equal_the_file(
    name: str, lut: int, ff: int, tiles: int, dsp: int, util_lut: float, util_dsp: float
) -> None:
    [report] = read_upload(name, fixture(name))
    assert report.source == "vivado_synth"
    assert (report.lut, report.ff, report.dsp) == (lut, ff, dsp)
    assert report.bram == 2 * tiles  # a 36 Kb tile is two 18 Kb blocks
    assert report.raw["used"]["bram_tiles"] == tiles
    assert report.utilisation["lut"] == util_lut and report.utilisation["dsp"] == util_dsp
    assert report.part == "xcu250figd2104-2L"


CSYNTH_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <ReportVersion><Version>2020.1</Version></ReportVersion>
  <UserAssignments><unit>ns</unit><Part>xcku115-flvb2104-2-i</Part><TopModelName>myproject</TopModelName>
    <TargetClockPeriod>5.00</TargetClockPeriod><FlowTarget>vivado</FlowTarget></UserAssignments>
  <PerformanceEstimates>
    <SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>4.350</EstimatedClockPeriod></SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency><unit>clock cycles</unit><Best-caseLatency>9</Best-caseLatency>
      <Worst-caseLatency>11</Worst-caseLatency><Worst-caseRealTimeLatency>55.000 ns</Worst-caseRealTimeLatency>
      <Interval-min>1</Interval-min><Interval-max>2</Interval-max></SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates>
    <Resources><BRAM_18K>4</BRAM_18K><DSP48E>955</DSP48E><FF>21000</FF><LUT>52000</LUT><URAM>0</URAM></Resources>
    <AvailableResources><BRAM_18K>4320</BRAM_18K><DSP48E>5520</DSP48E><FF>1326720</FF><LUT>663360</LUT>
      <URAM>0</URAM></AvailableResources>
  </AreaEstimates>
</profile>
"""


def test_csynth_xml() -> None:
    report = parse_csynth_xml(CSYNTH_XML, "myproject_csynth.xml")
    assert report.source == "vivado_hls" and report.part == "xcku115-flvb2104-2-i"
    assert (report.dsp, report.lut, report.ff, report.bram) == (955, 52000, 21000, 4)
    assert (report.latency_cycles, report.latency_ns, report.initiation_interval) == (11, 55.0, 2)
    assert report.utilisation["dsp"] == round(100 * 955 / 5520, 2)


def test_hostile_xml_is_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b"<profile>&lol2;</profile>"
    )
    with pytest.raises(ReportError, match="not a readable XML report"):
        read_upload("myproject_csynth.xml", bomb)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    return buffer.getvalue()


REPORT_DIR = {
    "prj/project.tcl": b'set project_name "myproject"\nset part "xcu250-figd2104-2L-e"\n',
    "prj/myproject_prj/solution1/syn/report/myproject_csynth.rpt": fixture("pruned_cnn_csynth.rpt"),
    "prj/myproject_prj/solution1/syn/report/dense_config17_csynth.rpt": fixture(
        "quantized_pruned_cnn_csynth.rpt"
    ).replace(b"'myproject'", b"'dense_config17'"),
    "prj/vivado_synth.rpt": fixture("pruned_cnn_vivado_synth.rpt"),
    "prj/firmware/myproject.cpp": b"// not read",
}


@pytest.mark.parametrize("pack", [_zip, _tar])
def test_report_directory_archive(pack) -> None:
    reports = read_upload("reports.archive", pack(REPORT_DIR))
    by_source = {r.source: r for r in reports}
    assert set(by_source) == {"vivado_hls", "vivado_synth"}
    assert by_source["vivado_hls"].dsp == 5414  # the top function's report, not the module's (340)
    assert by_source["vivado_synth"].lut == 123948


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"../evil_csynth.rpt": b"x"}, "outside the archive"),
        ({"/etc/cron.d/evil_csynth.rpt": b"x"}, "outside the archive"),
        ({"reports/readme.txt": b"nothing here"}, "no \\*_csynth.rpt"),
    ],
)
def test_bad_archives_are_refused(members: dict[str, bytes], message: str) -> None:
    for pack in (_zip, _tar):
        with pytest.raises(ReportError, match=message):
            read_upload("upload.zip", pack(members))


def test_links_in_tar_are_refused() -> None:
    with pytest.raises(ReportError, match="link"):
        read_upload(
            "r.tar.gz", _tar({"a_csynth.rpt": fixture("pruned_cnn_csynth.rpt")}, links={"b_csynth.rpt": "/etc/passwd"})
        )


def test_oversize_and_bombs_are_refused() -> None:
    with pytest.raises(ReportError, match="limit"):
        read_upload("big_csynth.rpt", fixture("pruned_cnn_csynth.rpt"), max_bytes=1000)
    bomb = _zip({"myproject_csynth.rpt": b"\0" * 50_000_000})
    assert len(bomb) < 100_000
    with pytest.raises(ReportError, match="unpacks to more than"):
        read_upload("bomb.zip", bomb, max_bytes=10_000_000)


def test_wrong_format_is_refused() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    with pytest.raises(ReportError, match="expected a"):
        read_upload("myproject_csynth.rpt", png)
    with pytest.raises(ReportError, match="expected a"):
        read_upload("notes.txt", b"hello")
    with pytest.raises(ReportError, match="neither"):
        read_upload("x_csynth.rpt", b"== Vivado HLS Report for 'x'\nnothing else\n")
