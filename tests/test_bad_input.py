"""A corpus of bad input (issue 17 part 4), each case made by code from the bundled data.

Every case runs through the CLI (typer's CliRunner, in process; FIFOs in a subprocess with
a timeout, since a regression would hang) and must give exit 2, a message naming the file
and the key, column or row, no traceback, and nothing of the file beyond the offending cell.
A representative subset also goes through `simulate` and `plan`. The real bundled files and
both example sites must still pass (no false alarms).
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from coolshift.cli import app
from conftest import LARGE_SITE, REPO, SMALL_SITE

DATA = REPO / "data"
CISO = DATA / "carbon_intensity/eia930_2022/CISO_2022_hourly.csv"
SJ_WX = DATA / "weather/openmeteo_2022/US-CAL-CISO_2022.json"
ALIBABA_5MIN = DATA / "workload/alibaba2018_machine_usage_days_1_to_8_grouped_300_seconds.csv"
PERIOD = ["--start", "2022-01-02", "--end", "2022-01-04"]
SECRET = "sk_live_7f3cd00dSECRET"


def cli(*args, env: dict | None = None) -> tuple[int, str]:
    """Run coolshift in process; the exit code and stdout+stderr."""
    res = CliRunner().invoke(app, [str(a) for a in args], env=env)
    out = res.output + (res.stderr if res.stderr_bytes is not None and res.stderr not in res.output else "")
    assert res.exception is None or isinstance(res.exception, SystemExit), f"uncaught {res.exception!r}\n{out}"
    return res.exit_code, out


def refused(code: int, out: str, *names) -> None:
    """Exit 2, no traceback, every expected name in the message."""
    assert code == 2, out
    assert "Traceback" not in out, out
    flat = " ".join(out.split())
    for n in names:
        assert str(n) in out or str(n) in flat, f"{n!r} not in:\n{out}"


# --- inputs made from the bundled data ------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def carbon_lines() -> list[str]:
    """The first ten weeks of EIA-930 CISO 2022 (header + 1,680 hours)."""
    return CISO.read_text(encoding="utf-8").splitlines()[: 1 + 24 * 70]


@pytest.fixture(scope="module")
def canonical() -> pd.DataFrame:
    """CISO intensity (g/kWh) for the same ten weeks as timestamp,gco2_per_kwh."""
    from coolshift.io import read_carbon

    ci = read_carbon(CISO)["gco2_per_kwh"].iloc[: 24 * 70]
    return pd.DataFrame({"timestamp": [t.isoformat() for t in ci.index], "gco2_per_kwh": ci.round(3).to_numpy()})


@pytest.fixture(scope="module")
def weather() -> dict:
    return json.loads(SJ_WX.read_text(encoding="utf-8"))


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def site_yaml(corpus: Path, name: str, edit=None, raw_text: str | None = None) -> Path:
    """The San Jose example with absolute data paths, optionally edited as text."""
    text = raw_text if raw_text is not None else SMALL_SITE.read_text(encoding="utf-8").replace("../../data/", f"{DATA}/")
    if edit:
        text = edit(text)
    return write(corpus / name, text)


def validate(*extra, site: Path = SMALL_SITE) -> tuple[int, str]:
    return cli("validate", "--site", site, *PERIOD, *extra)


# --- no false alarms ------------------------------------------------------------------------
@pytest.mark.parametrize("site", [SMALL_SITE, LARGE_SITE], ids=["sanjose", "philadelphia"])
def test_example_sites_and_their_real_data_validate(site):
    code, out = cli("validate", "--site", site)  # the whole default period (a year)
    assert code == 0 and "and its data are valid" in " ".join(out.split()), out


def test_bundled_real_files_pass_the_unit_checks():
    """Every bundled real grid (EIA-930: CAISO, PJM, Bonneville, ERCOT) and Open-Meteo city passes.

    (The Electricity Maps exports may not be bundled; their layout is tested in test_io_readers.)"""
    from coolshift.io import GapPolicy, read_carbon, read_weather

    carbon = sorted((REPO / "data" / "carbon_intensity").rglob("*.csv"))
    weather = sorted((REPO / "data" / "weather").rglob("*.json"))
    assert len(carbon) == 4 and len(weather) == 2
    for f in carbon:
        assert len(read_carbon(f, gap_policy=GapPolicy(max_fill_h=48))) == 8760
    for f in weather:
        read_weather(f)


# --- unit confusion: carbon -----------------------------------------------------------------
def test_carbon_in_kg_per_kwh_is_refused_and_accepted_with_scale(corpus, canonical):
    kg = canonical.assign(gco2_per_kwh=canonical["gco2_per_kwh"] / 1000)
    p = corpus / "ci_kg.csv"
    kg.to_csv(p, index=False)
    assert 0.05 < kg["gco2_per_kwh"].median() < 0.4  # the 0.15-0.34 of the report
    refused(*validate("--carbon", p), p, "gco2_per_kwh", "kgCO2/kWh", "scale: 1000")
    site = site_yaml(corpus, "site_kg_scaled.yaml",
                     lambda t: t.replace(f"carbon: {{path: {DATA}/carbon_intensity/eia930_2022/CISO_2022_hourly.csv, format: eia930}}",
                                         f"carbon: {{path: {p}, scale: 1000}}"))
    code, out = validate(site=site)
    assert code == 0, out


def test_a_run_of_kg_values_in_g_data_names_the_rows(corpus, canonical):
    mixed = canonical.copy()
    mixed.loc[96:167, "gco2_per_kwh"] = (mixed.loc[96:167, "gco2_per_kwh"] / 1000).round(4)  # days 5-7 in kg
    p = corpus / "ci_mixed.csv"
    mixed.to_csv(p, index=False)
    refused(*validate("--carbon", p), p, "gco2_per_kwh", "rows 98-169", "72 value(s)")


def test_carbon_in_lb_per_mwh_is_refused_where_it_can_be_told(corpus, canonical):
    lb = canonical["gco2_per_kwh"] * 2.2046
    # a header naming the unit (WattTime-style file, value column in pounds)
    p = write(corpus / "moer_lbs.csv", "time,moer_lbs_per_mwh\n" + "\n".join(
        f"{t[:19].replace('T', ' ')},{v:.2f}" for t, v in zip(canonical["timestamp"], lb)) + "\n")
    refused(*validate("--carbon", p), p, "moer_lbs_per_mwh", "pounds")
    # a median no grid has (a dirty grid's lb/MWh, or another unit)
    q = corpus / "ci_x5.csv"
    canonical.assign(gco2_per_kwh=canonical["gco2_per_kwh"] * 5).to_csv(q, index=False)
    refused(*validate("--carbon", q), q, "gco2_per_kwh", "lb/MWh")


# --- unit confusion: weather ----------------------------------------------------------------
def _wx(corpus: Path, name: str, weather: dict, mutate) -> Path:
    doc = json.loads(json.dumps(weather))
    mutate(doc)
    return write(corpus / name, json.dumps(doc))


def test_humidity_as_a_fraction_is_refused(corpus, weather):
    def frac(doc):
        doc["hourly"]["relative_humidity_2m"] = [None if v is None else v / 100 for v in doc["hourly"]["relative_humidity_2m"]]

    p = _wx(corpus, "wx_rh_frac.json", weather, frac)
    refused(*validate("--weather", p), p, "relative_humidity_2m", "fraction")

    def two_days(doc):
        rh = doc["hourly"]["relative_humidity_2m"]
        rh[200:248] = [v / 100 for v in rh[200:248]]

    q = _wx(corpus, "wx_rh_2days.json", weather, two_days)
    refused(*validate("--weather", q), q, "relative_humidity_2m", "rows 201-248")


def test_winter_days_in_degf_are_refused_naming_the_rows(corpus, weather):
    def fahrenheit(doc):
        t = doc["hourly"]["temperature_2m"]
        t[96:192] = [round(v * 1.8 + 32, 1) for v in t[96:192]]  # 5-8 January, local time

    p = _wx(corpus, "wx_degf.json", weather, fahrenheit)
    code, out = validate("--weather", p)
    refused(code, out, p, "temperature_2m", "degF", "latitude 37.43", "January")
    first = 97 + int(np.argmax(np.array(weather["hourly"]["temperature_2m"][96:192]) * 1.8 + 32 > 38))
    assert f"rows {first}-" in " ".join(out.split())


def test_kelvin_and_declared_fahrenheit_are_refused(corpus, weather):
    p = _wx(corpus, "wx_kelvin.json", weather,
            lambda d: d["hourly"].update(temperature_2m=[v + 273.15 for v in d["hourly"]["temperature_2m"]]))
    refused(*validate("--weather", p), p, "temperature_2m")
    q = _wx(corpus, "wx_unit_f.json", weather, lambda d: d["hourly_units"].update(temperature_2m="\u00b0F"))
    refused(*validate("--weather", q), q, "temperature_2m", "Celsius")


def test_canonical_weather_in_degf_columns_is_refused(corpus, weather):
    idx = pd.date_range("2022-01-01T08:00Z", periods=24 * 10, freq="h")
    t = np.array(weather["hourly"]["temperature_2m"][: len(idx)], dtype=float)
    rh = np.array(weather["hourly"]["relative_humidity_2m"][: len(idx)], dtype=float)
    lines = ["timestamp,temp_c,rh_pct"] + [f"{i.isoformat()},{a * 1.8 + 32:.1f},{b:g}" for i, a, b in zip(idx, t, rh)]
    p = write(corpus / "wx_canonical_f.csv", "\n".join(lines) + "\n")
    refused(*validate("--weather", p), p, "temp_c", "row 2")


def test_workload_percent_column_holding_fractions_is_refused(corpus):
    df = pd.read_csv(ALIBABA_5MIN)
    df["cpu_util_percent"] = df["cpu_util_percent"] / 100
    p = corpus / "alibaba_frac.csv"
    df.to_csv(p, index=False)
    refused(*validate("--workload", p, "--workload-format", "alibaba2018_5min"), p, "cpu_util_percent", "fraction")


# --- file kinds and encodings -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gzip", "bzip2", "utf16", "utf16_nobom", "utf8_bom", "crlf"])
def test_compressed_and_encoded_files_are_read_transparently(corpus, carbon_lines, kind):
    text = "\n".join(carbon_lines) + "\n"
    data = {"gzip": lambda: gzip.compress(text.encode()), "bzip2": lambda: bz2.compress(text.encode()),
            "utf16": lambda: text.encode("utf-16"), "utf16_nobom": lambda: text.encode("utf-16-le"),
            "utf8_bom": lambda: b"\xef\xbb\xbf" + text.encode(), "crlf": lambda: text.replace("\n", "\r\n").encode()}[kind]()
    p = write(corpus / f"ci_{kind}.csv", data)
    code, out = validate("--carbon", p)
    assert code == 0 and "and its data are valid" in " ".join(out.split()), out


def test_utf16_weather_json_and_site_yaml_are_read(corpus, weather):
    p = write(corpus / "wx_utf16.json", json.dumps(weather).encode("utf-16"))
    site = site_yaml(corpus, "site_utf16.yaml")
    site.write_bytes(site.read_text(encoding="utf-8").encode("utf-16"))
    code, out = validate("--weather", p, site=site)
    assert code == 0, out


def _zip(text: str) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ci.csv", text)
    return buf.getvalue()


@pytest.mark.parametrize(
    "kind, content, expect",
    [
        ("random", lambda lines: np.random.default_rng(1).bytes(4096), "not UTF-8"),
        ("truncated_gzip", lambda lines: gzip.compress("\n".join(lines).encode())[:500], "corrupt or truncated"),
        ("zip", lambda lines: _zip("\n".join(lines)), "zip archive"),
        ("empty", lambda lines: b"", "empty file"),
        ("only_whitespace", lambda lines: b"\n\n  \n", "empty file"),
        ("nul_bytes", lambda lines: ("\n".join(lines[:50]) + "\x00\x00\n").encode(), "binary content"),
        ("latin1", lambda lines: ("timestamp,gco2_per_kwh,note\n2022-01-01T00:00Z,250,5\u00b0C\n").encode("latin-1"), "line 2"),
        ("semicolons", lambda lines: "\n".join(l.replace(",", ";") for l in lines).encode(), "separated by ';'"),
        ("duplicate_column", lambda lines: ("\n".join([lines[0].replace("SUN", "WND")] + lines[1:])).encode(), "appears twice"),
        ("ragged_line", lambda lines: ("\n".join(lines[:49] + [lines[49] + ",7,8"] + lines[50:])).encode(), "line 50"),
        ("parquet", lambda lines: b"PAR1" + bytes(100), "Parquet"),
        ("text_in_numbers", lambda lines: ("\n".join(lines[:9] + [lines[9].replace(",", ",abc", 1)] + lines[10:])).encode(), "row 10"),
    ],
)
def test_bad_carbon_files_are_refused(corpus, carbon_lines, kind, content, expect):
    p = write(corpus / f"bad_{kind}.csv", content(carbon_lines))
    refused(*validate("--carbon", p), p, expect)


def test_directory_and_device_as_data_paths_are_refused(corpus):
    refused(*validate("--carbon", corpus), corpus, "directory")
    refused(*validate("--weather", "/dev/null"), "/dev/null", "character device")
    refused(*validate("--workload", corpus / "absent.csv"), "absent.csv", "file not found")


def _cli_subprocess(*args, timeout: float = 60) -> tuple[int, str]:
    exe = Path(sys.executable).with_name("coolshift")
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, COLUMNS="200"), stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("option", ["--carbon", "--weather", "--workload", "--site"])
def test_a_fifo_is_refused_without_hanging(tmp_path, option):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    args = ["validate", "--site", fifo if option == "--site" else SMALL_SITE, *PERIOD]
    if option != "--site":
        args += [option, fifo]
    code, out = _cli_subprocess(*args)  # raises TimeoutExpired if the reader blocks
    refused(code, out, "pipe", "FIFO")


# --- nothing of the file leaks ----------------------------------------------------------------
@pytest.mark.parametrize(
    "option, fmt",
    [("--carbon", None), ("--carbon", "canonical"), ("--carbon", "eia930"), ("--carbon", "watttime"), ("--carbon", "lwa"),
     ("--carbon", "electricitymaps"), ("--weather", None), ("--weather", "canonical"), ("--weather", "openmeteo"),
     ("--weather", "epw"), ("--workload", None), ("--workload", "canonical"), ("--workload", "alibaba2018_5min")],
)
def test_a_secret_first_line_is_never_printed(corpus, option, fmt):
    p = write(corpus / f"secret_{option[2:]}_{fmt}.txt", f"API_KEY={SECRET},{SECRET}x\nLOCATION,{SECRET}\n{SECRET};1;2\n")
    extra = [f"{option}-format", fmt] if fmt else []
    code, out = validate(option, p, *extra)
    refused(code, out, p)
    assert SECRET not in out and "API_KEY" not in out, out


def test_a_system_file_as_data_is_refused_without_its_content(corpus):
    link = corpus / "passwd.csv"
    if not link.exists():
        link.symlink_to("/etc/passwd")
    first = Path("/etc/passwd").read_text().splitlines()[0]
    for option in ("--carbon", "--weather", "--workload"):
        code, out = validate(option, link)
        refused(code, out, "passwd")  # the resolved path is named
        assert first not in out and first.split(":")[0] + ":" not in out, out


def test_a_yaml_syntax_error_does_not_print_the_line(corpus):
    site = site_yaml(corpus, "site_syntax.yaml", lambda t: t.replace("grid_region: CISO", f"grid_region: [{SECRET}"))
    code, out = validate(site=site)
    refused(code, out, site, "line 10")
    assert SECRET not in out, out


# --- strict site YAML -------------------------------------------------------------------------
YAML_CASES = [
    ("duplicate_key", lambda t: t.replace("  ups_rated_kw: 2400\n", "  ups_rated_kw: 2400\n  ups_rated_kw: 240\n"),
     ["duplicate key 'ups_rated_kw'", "electrical", "line"]),
    ("duplicate_top_key", lambda t: t + "\nname: other_site\n", ["duplicate key 'name'", "top level"]),
    ("inf", lambda t: t.replace("ups_rated_kw: 2400", "ups_rated_kw: .inf"), ["electrical.ups_rated_kw", "not a finite number"]),
    ("neg_inf", lambda t: t.replace("lighting_other_kw: 30", "lighting_other_kw: -.inf"), ["electrical.lighting_other_kw", "finite"]),
    ("nan", lambda t: t.replace("pdu_loss_frac: 0.015", "pdu_loss_frac: .nan"), ["electrical.pdu_loss_frac", "finite"]),
    ("quoted_inf", lambda t: t.replace("rated_cop: 6.1", 'rated_cop: "inf"'), ["cooling.chiller.rated_cop", "finite"]),
    ("yes", lambda t: t.replace("rated_capacity_kw: 2800", "rated_capacity_kw: yes"), ["cooling.chiller.rated_capacity_kw", "'yes'", "boolean"]),
    ("on", lambda t: t.replace("racks: 160", "racks: on", 1), ["zones.0.racks", "'on'", "boolean"]),
    ("no", lambda t: t.replace("pump_rated_kw: 88", "pump_rated_kw: no"), ["cooling.pump_rated_kw", "'no'", "boolean"]),
    ("true_in_list", lambda t: t.replace("0.25, 0.37, 0.44", "true, 0.37, 0.44", 1), ["server_pools.1.power_curve_frac.0", "boolean"]),
    ("octal", lambda t: t.replace("racks: 160", "racks: 0160", 1), ["zones.0.racks", "octal"]),
    ("base60", lambda t: t.replace("horizon_h: 24", "horizon_h: 1:30"), ["planning.horizon_h", "base-60"]),
    ("unknown_key", lambda t: t.replace("  ups_rated_kw: 2400\n", "  ups_rated_kw: 2400\n  ups_rated_w: 5\n"),
     ["electrical.ups_rated_w", "unknown key", "line"]),
    ("tab", lambda t: t.replace("  pump_rated_kw: 88", "\tpump_rated_kw: 88"), ["not valid YAML at line"]),
    ("two_documents", lambda t: t + "\n---\nname: x\n", ["not valid YAML", "single document"]),
    ("top_level_list", lambda t: "- a\n- b\n", ["mapping"]),
    ("empty", lambda t: "", ["empty"]),
    ("alias_bomb", lambda t: "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcde", "bcdef")), ["aliases"]),
    ("wrong_type", lambda t: t.replace("racks: 160", "racks: many", 1), ["zones.0.racks", "line 20"]),
]


@pytest.mark.parametrize("name, edit, expect", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_strict_site_yaml(corpus, name, edit, expect):
    site = site_yaml(corpus, f"site_{name}.yaml", edit)
    refused(*validate(site=site), site, *expect)


def test_non_text_sites_are_refused_naming_the_file(corpus):
    rnd = write(corpus / "site_random.yaml", np.random.default_rng(7).bytes(3000))
    refused(*validate(site=rnd), rnd, "not UTF-8")
    refused(*validate(site=corpus), corpus, "directory")
    nul = write(corpus / "site_nul.yaml", b"name: x\x00\n")
    refused(*validate(site=nul), nul, "binary content")


def test_booleans_where_booleans_belong_still_load(corpus):
    site = site_yaml(corpus, "site_bool_ok.yaml",
                     lambda t: t.replace("- {name: batch, kind: batch, share: 0.45, deadline_h: 12}",
                                         "- {name: batch, kind: batch, share: 0.45, deadline_h: 12, offloadable: no}"))
    from coolshift.config import load_site

    assert load_site(site).workload_classes[1].offloadable is False


# --- command-line dates -----------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [("--start", "2022-13-45"), ("--start", "2022-02-30"), ("--end", "soon"),
                                           ("--start", "1"), ("--end", "2022-01-01T25:00Z")])
def test_bad_dates_name_the_option(option, value):
    args = ["--start", "2022-01-02", "--end", "2022-01-04"]
    args[args.index(option) + 1] = value
    code, out = cli("validate", "--site", SMALL_SITE, *args)
    refused(code, out, option, "ISO 8601")


# --- a subset through simulate and plan (slower commands) ---------------------------------------
@pytest.fixture(scope="module")
def bad_set(corpus, canonical, weather) -> dict:
    kg = corpus / "sub_ci_kg.csv"
    canonical.assign(gco2_per_kwh=canonical["gco2_per_kwh"] / 1000).to_csv(kg, index=False)
    degf = _wx(corpus, "sub_wx_degf.json", weather,
               lambda d: d["hourly"].update(temperature_2m=[round(v * 1.8 + 32, 1) for v in d["hourly"]["temperature_2m"][:200]]
                                            + d["hourly"]["temperature_2m"][200:]))
    binary = write(corpus / "sub_binary.csv", np.random.default_rng(3).bytes(2048))
    dup = site_yaml(corpus, "sub_dup.yaml", lambda t: t.replace("  ups_rated_kw: 2400\n", "  ups_rated_kw: 2400\n  ups_rated_kw: 400\n"))
    return {"kg": (["--carbon", kg], [kg, "kgCO2/kWh"]), "degf": (["--weather", degf], [degf, "temperature_2m"]),
            "binary": (["--carbon", binary], [binary, "not UTF-8"]), "dup": (["--site", dup], [dup, "duplicate key"]),
            "date": (["--start", "2022-13-45"], ["--start"])}


@pytest.mark.parametrize("case", ["kg", "degf", "binary", "dup", "date"])
def test_simulate_refuses_the_subset(tmp_path, bad_set, case):
    extra, names = bad_set[case]
    site = [] if "--site" in extra else ["--site", SMALL_SITE]
    period = [] if "--start" in extra else PERIOD[:2]
    code, out = cli("simulate", *site, *period, "--end", "2022-01-03", "--out", tmp_path / "sim", *extra)
    refused(code, out, *names)
    assert not (tmp_path / "sim" / "summary.json").exists()


@pytest.mark.parametrize("case", ["kg", "degf", "binary", "dup", "date"])
def test_plan_refuses_the_subset(tmp_path, bad_set, case, monkeypatch):
    monkeypatch.setenv("COOLSHIFT_STATE_DIR", str(tmp_path / "state"))
    extra, names = bad_set[case]
    site = [] if "--site" in extra else ["--site", SMALL_SITE]
    start = [] if "--start" in extra else ["--start", "2022-01-20"]
    code, out = cli("plan", *site, *start, "--runs", tmp_path / "runs", "--no-mlflow", "--workdir", tmp_path / "wd", *extra)
    refused(code, out, *names)
    assert not list((tmp_path / "runs").rglob("plan.csv"))


def test_a_format_option_without_a_file_applies_to_the_configs_file():
    refused(*validate("--carbon-format", "bogus"), "CISO_2022_hourly.csv", "unknown carbon format 'bogus'")


def test_a_decompression_bomb_is_refused_without_filling_memory(corpus):
    from coolshift.io import DataError
    from coolshift.io.checks import read_bytes

    bomb = write(corpus / "bomb.csv.gz", gzip.compress(b"0" * (8 * 2**20)))
    with pytest.raises(DataError, match="after decompression"):
        read_bytes(bomb, max_bytes=2**20)
