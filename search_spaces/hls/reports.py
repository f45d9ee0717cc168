"""Import real synthesis reports: Vivado/Vitis HLS C-synthesis (``*_csynth.rpt`` / ``*_csynth.xml``) and
Vivado's post-synthesis utilisation report (``vivado_synth.rpt``), alone or as a report directory packed
into a ``.zip`` / ``.tar(.gz)`` archive.

hls4ml's own readers (``hls4ml.report.parse_vivado_report``) need the whole project directory laid out as
the tool wrote it and read the XML form only; users usually have one report file at hand, and the text
``.rpt`` is what Vivado HLS prints, so the tables are parsed here. Archives are read in memory, member by
member: absolute paths, ``..`` components, links and device files are refused, and so are archives whose
members add up to more than the size limit (a zip bomb is stopped before it is inflated).
"""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

MAX_MEMBERS = 20_000
MAX_REPORT_BYTES = 20 * 1024 * 1024


class ReportError(ValueError):
    """A file that is not a synthesis report we can read, or an archive we refuse; the message is for the
    person who uploaded it."""


@dataclass
class SynthesisReport:
    """One parsed report: ``source`` is ``vivado_hls``, ``vitis_hls`` or ``vivado_synth``."""

    source: str
    filename: str
    part: str = ""
    clock_period_ns: float | None = None
    dsp: int | None = None
    lut: int | None = None
    ff: int | None = None
    bram: float | None = None  # 18 Kb blocks
    latency_cycles: int | None = None
    latency_ns: float | None = None
    initiation_interval: int | None = None
    utilisation: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The report as FPGA-report fields (what :meth:`Reporter.fpga_report` and the model take)."""
        return {
            "source": self.source,
            "part": self.part,
            "clock_period_ns": self.clock_period_ns or 0.0,
            "dsp": self.dsp,
            "lut": self.lut,
            "ff": self.ff,
            "bram": self.bram,
            "latency_cycles": self.latency_cycles,
            "latency_ns": self.latency_ns,
            "initiation_interval": self.initiation_interval,
            "utilisation": self.utilisation,
            "raw": {"file": self.filename, **self.raw},
        }


# --- text C-synthesis report ----------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _number(text: str) -> float | None:
    text = text.strip()
    if text in ("", "-", "N/A", "?"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _time_ns(text: str) -> float | None:
    match = re.match(r"^\s*([\d.]+)\s*(ns|us|ms|s)\s*$", text)
    if not match:
        return None
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[match.group(2)]
    return round(float(match.group(1)) * scale, 6)


def parse_csynth_rpt(text: str, filename: str = "csynth.rpt") -> SynthesisReport:
    """A Vivado/Vitis HLS ``*_csynth.rpt``: the top function's latency, interval, clock and the
    utilisation-estimate ``Total`` / ``Available`` / ``Utilization (%)`` rows."""
    header = re.search(r"==\s*(Vivado|Vitis) HLS Report for '([^']+)'", text)
    if not header:
        raise ReportError(f"{filename}: not a Vivado/Vitis HLS C-synthesis report (no 'HLS Report for' header)")
    report = SynthesisReport(source="vitis_hls" if header.group(1) == "Vitis" else "vivado_hls", filename=filename)
    report.raw["top"] = header.group(2)
    if version := re.search(r"^\*\s*Version:\s*(.+)$", text, re.M):
        report.raw["version"] = version.group(1).strip()
    if part := re.search(r"^\*\s*Target device:\s*(\S+)", text, re.M):
        report.part = part.group(1)
    if clock := re.search(r"^\s*\|ap_clk\s*\|\s*([\d.]+\s*ns)\s*\|\s*([\d.]+\s*ns)\s*\|", text, re.M):
        report.clock_period_ns = _time_ns(clock.group(1))
        report.raw["estimated_clock_ns"] = _time_ns(clock.group(2))
    _latency_summary(text, report)
    _utilisation_summary(text, report)
    if report.dsp is None and report.latency_cycles is None:
        raise ReportError(f"{filename}: found neither the latency summary nor the utilisation estimates")
    return report


def _latency_summary(text: str, report: SynthesisReport) -> None:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "Latency (cycles)" in line and "Latency (absolute)" in line:
            for row in lines[i + 1 : i + 6]:
                cells = _cells(row)
                if len(cells) >= 6 and _number(cells[0]) is not None:
                    report.latency_cycles = int(float(cells[1]))
                    report.latency_ns = _time_ns(cells[3])
                    report.initiation_interval = int(float(cells[5]))
                    report.raw["latency_cycles_min"] = int(float(cells[0]))
                    report.raw["interval_min"] = int(float(cells[4]))
                    if len(cells) >= 7:
                        report.raw["pipeline"] = cells[6]
                    return
            return


def _utilisation_summary(text: str, report: SynthesisReport) -> None:
    section = text.split("== Utilization Estimates", 1)
    if len(section) < 2:
        return
    names: list[str] = []
    rows: dict[str, list[str]] = {}
    for line in section[1].splitlines():
        if not line.startswith("|"):
            if rows.get("Total") and names:
                if line.startswith("+ Detail") or line.strip().startswith("* "):
                    break
            continue
        cells = _cells(line)
        if cells[0] == "Name" and not names:
            names = cells[1:]
        elif names and cells[0] in ("Total", "Available", "Utilization (%)") and cells[0] not in rows:
            rows[cells[0]] = cells[1:]
    if not names or "Total" not in rows:
        return
    total = dict(zip(names, rows["Total"], strict=False))
    report.raw["resources"] = {k: _number(v) for k, v in total.items()}
    report.dsp = _int(total.get("DSP48E", total.get("DSP")))
    report.lut = _int(total.get("LUT"))
    report.ff = _int(total.get("FF"))
    report.bram = _number(total.get("BRAM_18K", ""))
    if "Available" in rows:
        report.raw["available"] = {k: _number(v) for k, v in zip(names, rows["Available"], strict=False)}
    if "Utilization (%)" in rows:
        util = {k: _number(v) for k, v in zip(names, rows["Utilization (%)"], strict=False)}
        report.utilisation = _util_keys(util)


def _int(text: str | None) -> int | None:
    value = _number(text or "")
    return None if value is None else int(value)


def _util_keys(util: dict[str, float | None]) -> dict[str, float]:
    keys = {"DSP48E": "dsp", "DSP": "dsp", "LUT": "lut", "FF": "ff", "BRAM_18K": "bram", "URAM": "uram"}
    return {keys[k]: v for k, v in util.items() if k in keys and v is not None}


def csynth_instances(text: str) -> dict[str, dict[str, float]]:
    """The top function's per-instance rows of a ``*_csynth.rpt``: module name → ``dsp``, ``lut``, ``ff``,
    ``bram`` (18 Kb) from the utilisation detail and ``latency_cycles``/``interval`` from the latency detail
    (what a layer of the generated network used, e.g. ``dense_latency_…_config2_s``)."""
    out: dict[str, dict[str, float]] = {}
    latency, utilisation = (text.split("== Utilization Estimates", 1) + [""])[:2]
    for section, wanted in ((latency, "Latency"), (utilisation, "Utilisation")):
        block = section.split("* Instance:", 1)
        if len(block) < 2:
            continue
        names: list[str] = []
        for line in block[1].splitlines():
            if line.strip().startswith("* "):
                break
            cells = _cells(line) if line.strip().startswith("|") else []
            if not cells or cells[0] == "Total":
                continue
            if cells[0] == "Instance":
                names = cells
                continue
            if len(cells) < 4 or _number(cells[2]) is None:
                continue
            row = out.setdefault(cells[1], {})
            if wanted == "Latency":  # Instance | Module | min | max | abs min | abs max | II min | II max
                row["latency_cycles"] = float(cells[3])
                row["interval"] = (_number(cells[7]) if len(cells) > 7 else None) or 0.0
            else:
                named = dict(zip(names, cells, strict=False))
                row.update(
                    {
                        key: _number(named.get(col, "")) or 0.0
                        for key, col in (("bram", "BRAM_18K"), ("ff", "FF"), ("lut", "LUT"))
                    }
                )
                row["dsp"] = _number(named.get("DSP48E", named.get("DSP", ""))) or 0.0
    return out


# --- XML C-synthesis report ----------------------------------------------------------------------------


def parse_csynth_xml(data: bytes, filename: str = "csynth.xml") -> SynthesisReport:
    """A ``*_csynth.xml`` (the fields hls4ml's reader takes), parsed with defusedxml: entity expansion and
    external references are refused, so a hostile file cannot blow up memory or read local files."""
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    try:
        root = SafeET.fromstring(data)
    except (DefusedXmlException, SafeET.ParseError) as exc:
        raise ReportError(f"{filename}: not a readable XML report ({exc})") from exc
    perf, area = root.find("./PerformanceEstimates"), root.find("./AreaEstimates/Resources")
    if perf is None or area is None:
        raise ReportError(f"{filename}: not an HLS C-synthesis XML report (no PerformanceEstimates/AreaEstimates)")

    def text(path: str, node: Any = root) -> str:
        found = node.find(path)
        return found.text.strip() if found is not None and found.text else ""

    flow = text("./UserAssignments/FlowTarget").lower()
    version = text("./ReportVersion/Version")
    report = SynthesisReport(
        source="vitis_hls" if flow == "vitis" or "vitis" in version.lower() else "vivado_hls",
        filename=filename,
        part=text("./UserAssignments/Part"),
    )
    report.clock_period_ns = _number(text("./UserAssignments/TargetClockPeriod"))
    report.raw.update(
        top=text("./UserAssignments/TopModelName"),
        version=version,
        estimated_clock_ns=_number(text("./SummaryOfTimingAnalysis/EstimatedClockPeriod", perf)),
    )
    worst = _number(text("./SummaryOfOverallLatency/Worst-caseLatency", perf))
    report.latency_cycles = None if worst is None else int(worst)
    report.latency_ns = _time_ns(text("./SummaryOfOverallLatency/Worst-caseRealTimeLatency", perf))
    if report.latency_ns is None and worst is not None and report.clock_period_ns:
        report.latency_ns = round(worst * report.clock_period_ns, 6)
    interval = _number(text("./SummaryOfOverallLatency/Interval-max", perf))
    report.initiation_interval = None if interval is None else int(interval)
    resources = {child.tag: _number(child.text or "") for child in area}
    available_node = root.find("./AreaEstimates/AvailableResources")
    available_children = list(available_node) if available_node is not None else []
    available = {child.tag: _number(child.text or "") for child in available_children}
    report.raw.update(resources=resources, available=available)
    report.dsp = _int(str(resources.get("DSP48E", resources.get("DSP", "")) or ""))
    report.lut, report.ff = _int(str(resources.get("LUT") or "")), _int(str(resources.get("FF") or ""))
    report.bram = resources.get("BRAM_18K")
    report.utilisation = _util_keys(
        {k: round(100.0 * v / a, 2) for k, v in resources.items() if v is not None and (a := available.get(k))}
    )
    return report


# --- Vivado utilisation report ---------------------------------------------------------------------------

_SITE_ROWS = {
    "lut": ("CLB LUTs", "Slice LUTs"),
    "ff": ("CLB Registers", "Slice Registers"),
    "bram_tiles": ("Block RAM Tile",),
    "dsp": ("DSPs",),
}


def parse_vivado_synth(text: str, filename: str = "vivado_synth.rpt") -> SynthesisReport:
    """Vivado's ``report_utilization`` after synthesis: LUTs, registers, block RAM tiles (a 36 Kb tile is
    two 18 Kb blocks) and DSPs, each with the device's capacity and its percentage."""
    if "report_utilization" not in text and "Utilization Design Information" not in text:
        raise ReportError(f"{filename}: not a Vivado utilisation report (report_utilization)")
    report = SynthesisReport(source="vivado_synth", filename=filename)
    if device := re.search(r"^\|\s*Device\s*:\s*(\S+)", text, re.M):
        report.part = device.group(1)
    if version := re.search(r"^\|\s*Tool Version\s*:\s*(.+)$", text, re.M):
        report.raw["version"] = version.group(1).strip()
    found: dict[str, tuple[float, float | None, float | None]] = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        label = cells[0].rstrip("*").strip()
        for key, labels in _SITE_ROWS.items():
            if key not in found and label in labels and len(cells) >= 5 and _number(cells[1]) is not None:
                found[key] = (float(cells[1]), _number(cells[3]), _number(cells[4]))
    if not found:
        raise ReportError(f"{filename}: no utilisation table (CLB LUTs, registers, block RAM, DSPs) found")
    report.raw["used"] = {k: v[0] for k, v in found.items()}
    report.raw["available"] = {k: v[1] for k, v in found.items()}
    if "lut" in found:
        report.lut = int(found["lut"][0])
    if "ff" in found:
        report.ff = int(found["ff"][0])
    if "dsp" in found:
        report.dsp = int(found["dsp"][0])
    if "bram_tiles" in found:
        report.bram = 2 * found["bram_tiles"][0]
    report.utilisation = {("bram" if k == "bram_tiles" else k): v[2] for k, v in found.items() if v[2] is not None}
    return report


# --- uploads --------------------------------------------------------------------------------------------


def _kind_of(name: str, data: bytes) -> str | None:
    lowered = PurePosixPath(name).name.lower()
    head = data[:4096]
    if lowered.endswith(".xml") and b"<profile" in data[:65536]:
        return "csynth_xml"
    if lowered.endswith(".rpt"):
        if re.search(rb"HLS Report for '", head):
            return "csynth_rpt"
        if b"report_utilization" in head or b"Utilization Design Information" in head:
            return "vivado_synth"
    return None


def _parse_one(kind: str, name: str, data: bytes) -> SynthesisReport:
    if kind == "csynth_xml":
        return parse_csynth_xml(data, name)
    text = data.decode("utf-8", errors="replace")
    return parse_csynth_rpt(text, name) if kind == "csynth_rpt" else parse_vivado_synth(text, name)


def read_upload(filename: str, data: bytes, *, max_bytes: int = MAX_REPORT_BYTES) -> list[SynthesisReport]:
    """The reports in an uploaded file: one report file, or an archive of a report directory (the top
    function's C-synthesis report and Vivado's ``vivado_synth.rpt`` when present). Raises
    :class:`ReportError` with a message for the uploader."""
    if len(data) > max_bytes:
        raise ReportError(f"{filename}: {len(data):,} bytes; the limit is {max_bytes:,}")
    if zipfile.is_zipfile(io.BytesIO(data)):
        members = _zip_members(data, max_bytes)
    elif _is_tar(data):
        members = _tar_members(data, max_bytes)
    else:
        kind = _kind_of(filename, data)
        if kind is None:
            raise ReportError(
                f"{filename}: expected a *_csynth.rpt, *_csynth.xml, vivado_synth.rpt or a .zip/.tar.gz "
                "of a report directory"
            )
        return [_parse_one(kind, filename, data)]
    return _from_members(filename, members)


def _check_name(archive: str, name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise ReportError(f"{archive}: refused, member {name!r} points outside the archive")


def _zip_members(data: bytes, max_bytes: int) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ReportError(f"not a readable zip archive ({exc})") from exc
    if len(infos) > MAX_MEMBERS:
        raise ReportError(f"refused: {len(infos):,} members (limit {MAX_MEMBERS:,})")
    for info in infos:
        _check_name("archive", info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise ReportError(f"archive: refused, member {info.filename!r} is a symbolic link")
    if sum(info.file_size for info in infos) > max_bytes:
        raise ReportError(f"archive: refused, it unpacks to more than {max_bytes:,} bytes")
    out: dict[str, bytes] = {}
    for info in infos:
        if not info.is_dir() and _wanted(info.filename):
            with archive.open(info) as fh:
                out[info.filename] = _bounded_read(fh, info.file_size, max_bytes)
    return out


def _is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*"):
            return True
    except (tarfile.TarError, OSError, EOFError):
        return False


def _tar_members(data: bytes, max_bytes: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    total, count = 0, 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive:
                count += 1
                if count > MAX_MEMBERS:
                    raise ReportError(f"archive: refused, more than {MAX_MEMBERS:,} members")
                _check_name("archive", member.name)
                if member.issym() or member.islnk():
                    raise ReportError(f"archive: refused, member {member.name!r} is a link")
                if member.isdev() or member.isfifo():
                    raise ReportError(f"archive: refused, member {member.name!r} is a device or pipe")
                total += max(member.size, 0)
                if total > max_bytes:
                    raise ReportError(f"archive: refused, it unpacks to more than {max_bytes:,} bytes")
                if member.isfile() and _wanted(member.name):
                    fh = archive.extractfile(member)
                    if fh is not None:
                        out[member.name] = _bounded_read(fh, member.size, max_bytes)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ReportError(f"not a readable tar archive ({exc})") from exc
    return out


def _bounded_read(fh: Any, declared: int, max_bytes: int) -> bytes:
    data = fh.read(min(declared, max_bytes) + 1)
    if len(data) > min(declared, max_bytes):
        raise ReportError("archive: refused, a member is larger than it declares")
    return data


def _wanted(name: str) -> bool:
    base = PurePosixPath(name).name.lower()
    return base.endswith(("_csynth.rpt", "_csynth.xml", ".rpt")) or base == "project.tcl"


def _from_members(archive: str, members: dict[str, bytes]) -> list[SynthesisReport]:
    top = None
    for name, data in members.items():
        if PurePosixPath(name).name == "project.tcl":
            if match := re.search(rb'set\s+project_name\s+"?([\w.-]+)"?', data):
                top = match.group(1).decode()
    csynth: dict[str, tuple[str, bytes]] = {}
    synth: list[tuple[str, bytes]] = []
    for name, data in members.items():
        kind = _kind_of(name, data)
        if kind in ("csynth_rpt", "csynth_xml"):
            csynth[name] = (kind, data)
        elif kind == "vivado_synth":
            synth.append((name, data))
    reports: list[SynthesisReport] = []
    if csynth:
        reports.append(_pick_top(archive, csynth, top))
    for name, data in sorted(synth)[:1]:
        reports.append(parse_vivado_synth(data.decode("utf-8", errors="replace"), name))
    if not reports:
        raise ReportError(f"{archive}: no *_csynth.rpt, *_csynth.xml or vivado_synth.rpt inside")
    return reports


def _pick_top(archive: str, csynth: dict[str, tuple[str, bytes]], top: str | None) -> SynthesisReport:
    """The top function's C-synthesis report (a report directory holds one per module): the one named
    after project.tcl's project, else ``myproject_csynth``, else the only one; XML preferred over text."""
    stems = {name: PurePosixPath(name).name.rsplit("_csynth", 1)[0] for name in csynth}
    for wanted in (top, "myproject"):
        chosen = sorted((n for n, stem in stems.items() if stem == wanted), key=lambda n: not n.endswith(".xml"))
        if wanted and chosen:
            kind, data = csynth[chosen[0]]
            return _parse_one(kind, chosen[0], data)
    if len({stem for stem in stems.values()}) == 1:
        name = sorted(csynth, key=lambda n: not n.endswith(".xml"))[0]
        return _parse_one(csynth[name][0], name, csynth[name][1])
    raise ReportError(
        f"{archive}: several C-synthesis reports ({', '.join(sorted(set(stems.values())))}) and no "
        "project.tcl naming the top function; upload the top function's *_csynth report"
    )
