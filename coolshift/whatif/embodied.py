"""Embodied carbon of hardware a project retires or buys, and the carbon payback.

Small pure functions (pvlib style) and a named library of product carbon footprints (PCF).
Units: kgCO2e per unit of hardware in the presets, tCO2e in results, hours for periods.

Accounting (documented in ``docs/whatif.md``):

- A project's **one-off embodied carbon** is the manufacturing + transport footprint of the
  hardware it buys, plus, when ``count_retired_writeoff`` is set (the default, which makes
  a payback longer, never shorter), the part of the retired hardware's footprint not yet
  amortised at retirement (straight line over its lifetime: ``1 - age / lifetime``).
- ``tco2_embodied`` of a scenario over an evaluated period is that one-off carbon
  amortised straight-line over the new hardware's lifetime (the way a PCF spreads its
  embodied part over the use years it assumes): ``one_off x min(1, period / lifetime)``. The
  current site buys nothing, so its ``tco2_embodied`` is 0; the installed base is common to
  all scenarios and left out.
- **Payback** in months of carbon: one-off embodied carbon / operational saving per month,
  where a month is 730 h (8,760 h / 12). ``None`` when the project embodies nothing (not
  applicable) or saves nothing (never pays back).

PCF presets: the embodied (non-use) part of Dell's published PowerEdge product carbon
footprints (PAIA method, MIT Materials Systems Laboratory; sheets of 2019), as compiled in
github.com/YousefEZ/server-co2e ``dataset/aggregate.csv`` ("kgco2e w/o use" beside the
life-cycle total with 4 years of use). The sheets give manufacturing, transport and
end-of-life together as the non-use stages, so ``transport_kgco2e`` is 0 in these presets
(it is inside ``manufacturing_kgco2e``); a scenario may give its own split. Newer sheets
(2022 on) report larger manufacturing footprints for memory- and SSD-heavy configurations:
enter your vendor's own PCF when you have it.
"""

from __future__ import annotations

import math

from coolshift.whatif.scenario import PCF, Hardware, HardwareLine, Scenario, ScenarioError

__all__ = [
    "PCF_PRESETS",
    "HOURS_PER_MONTH",
    "HOURS_PER_YEAR",
    "resolve_pcf",
    "model_pcf",
    "embodied_kgco2e",
    "unamortised_frac",
    "amortised_kgco2e",
    "hardware_lines",
    "embodied_summary",
    "payback_months",
]

HOURS_PER_YEAR = 8760.0
HOURS_PER_MONTH = HOURS_PER_YEAR / 12.0  # 730 h

_DELL = (
    "Dell PowerEdge product carbon footprint sheet (2019, PAIA), non-use stages; compiled in "
    "github.com/YousefEZ/server-co2e dataset/aggregate.csv"
)
# name: PCF (kgCO2e per server). Lifetime 4 years: the use period the Dell sheets assume.
PCF_PRESETS: dict[str, PCF] = {
    # 1U two-socket Xeon server: 1,314.1 kgCO2e non-use of 7,730 kgCO2e life-cycle total.
    "dell_r640_2019": PCF(manufacturing_kgco2e=1314.1, lifetime_years=4.0, source=_DELL + ": R640"),
    # 2U two-socket Xeon server: 1,356.5 kgCO2e non-use of 8,640 kgCO2e total.
    "dell_r740_2019": PCF(manufacturing_kgco2e=1356.48, lifetime_years=4.0, source=_DELL + ": R740"),
    # 2U four-socket Xeon server (a typical virtualisation host): 1,575.6 of 15,600 kgCO2e total.
    "dell_r840_2019": PCF(manufacturing_kgco2e=1575.6, lifetime_years=4.0, source=_DELL + ": R840"),
    # 3U four-socket Xeon server: 1,466.4 kgCO2e non-use of 14,100 kgCO2e total.
    "dell_r940_2019": PCF(manufacturing_kgco2e=1466.4, lifetime_years=4.0, source=_DELL + ": R940"),
}


def resolve_pcf(pcf: str | PCF, where: str = "pcf") -> PCF:
    """A PCF from a preset name or an inline value; a bad name lists the valid ones (a site's
    ``reporting.hardware_models`` names are resolved first by :func:`hardware_lines`)."""
    if isinstance(pcf, PCF):
        return pcf
    try:
        return PCF_PRESETS[pcf]
    except KeyError:
        raise ScenarioError(
            f"{where}: unknown PCF preset {pcf!r}; presets (coolshift.whatif.embodied.PCF_PRESETS): "
            f"{sorted(PCF_PRESETS)}, a model of the site's reporting.hardware_models, or give manufacturing_kgco2e / transport_kgco2e / lifetime_years inline"
        ) from None


def model_pcf(model, where: str = "hardware_models") -> PCF:
    """The PCF of a site's :class:`~coolshift.reporting_config.HardwareModel` (its figures, or its preset
    with the model's service life): the lifecycle report and the what-ifs count a model alike."""
    if model.preset is not None:
        base = resolve_pcf(model.preset, f"{where}.preset")
        return base.model_copy(update={"transport_kgco2e": base.transport_kgco2e + model.transport_kgco2e,
                                       "lifetime_years": model.lifetime_years})
    return PCF(manufacturing_kgco2e=model.manufacturing_kgco2e, transport_kgco2e=model.transport_kgco2e,
               lifetime_years=model.lifetime_years, source=model.source)


def embodied_kgco2e(count: float, pcf: PCF) -> float:
    """Manufacturing + transport footprint [kgCO2e] of ``count`` units."""
    return float(count) * (pcf.manufacturing_kgco2e + pcf.transport_kgco2e)


def unamortised_frac(age_years: float, lifetime_years: float) -> float:
    """Share [0-1] of a footprint not yet amortised (straight line) at ``age_years``."""
    return max(0.0, 1.0 - age_years / lifetime_years)


def amortised_kgco2e(total_kgco2e: float, period_h: float, lifetime_years: float) -> float:
    """Share of ``total_kgco2e`` falling in a period of ``period_h`` hours (straight line)."""
    return total_kgco2e * min(1.0, period_h / (lifetime_years * HOURS_PER_YEAR))


def hardware_lines(scenario: Scenario, base_site, site) -> Hardware:
    """Explicit hardware lines plus those implied by a consolidation (with counts resolved)."""
    retired: list[HardwareLine] = []
    new: list[HardwareLine] = []
    base_n = {p.name: p.servers for p in base_site.server_pools}
    new_n = {p.name: p.servers for p in site.server_pools}
    hw = scenario.hardware or Hardware()
    models = getattr(getattr(base_site, "reporting", None), "hardware_models", {}) or {}

    def own(line):
        """A line whose pcf names one of the site's hardware models (the lifecycle inventory's
        figures) takes that model's PCF; preset names keep the preset."""
        if isinstance(line.pcf, str) and line.pcf in models and line.pcf not in PCF_PRESETS:
            return line.model_copy(update={"pcf": model_pcf(models[line.pcf], f"reporting.hardware_models.{line.pcf}")})
        return line

    for line in hw.retired:
        n = base_n[line.pool] if line.count == "all" else line.count
        retired.append(line.model_copy(update={"count": n}))
    for line in hw.new:
        n = new_n[line.pool] if line.count == "all" else line.count
        new.append(line.model_copy(update={"count": n}))
    c = scenario.consolidation
    if c is not None:
        for pool in c.pools:
            n, m = base_n[pool], new_n[pool]
            if c.buys_hosts:
                retired.append(HardwareLine(pool=pool, count=n, pcf=c.retired_pcf, age_years=c.retired_age_years))
                new.append(HardwareLine(pool=pool, count=m, pcf=c.host_pcf))
            else:
                retired.append(HardwareLine(pool=pool, count=n - m, pcf=c.retired_pcf, age_years=c.retired_age_years))
    return Hardware(retired=[own(x) for x in retired], new=[own(x) for x in new], count_retired_writeoff=hw.count_retired_writeoff)


def embodied_summary(hw: Hardware, period_h: float, pv=None) -> dict:
    """Embodied carbon of a project's hardware (resolved counts) for a period of ``period_h`` hours.

    Returns tCO2e: ``tco2_embodied_new`` (one-off, bought), ``tco2_embodied_retired_unamortised``
    (written off at retirement), ``tco2_embodied_one_off`` (what payback is measured against),
    ``tco2_embodied`` (one-off amortised over the period), and the lines used.
    """
    new_kg = 0.0
    amortised_kg = 0.0
    lines = []
    for i, line in enumerate(hw.new):
        pcf = resolve_pcf(line.pcf, f"hardware.new[{i}].pcf")
        kg = embodied_kgco2e(line.count, pcf)
        new_kg += kg
        amortised_kg += amortised_kgco2e(kg, period_h, pcf.lifetime_years)
        lines.append({"kind": "new", "pool": line.pool, "count": line.count, "kgco2e_per_unit":
                      pcf.manufacturing_kgco2e + pcf.transport_kgco2e, "lifetime_years": pcf.lifetime_years,
                      "tco2e": kg / 1000.0, "source": pcf.source})
    retired_kg = 0.0
    for i, line in enumerate(hw.retired):
        pcf = resolve_pcf(line.pcf, f"hardware.retired[{i}].pcf")
        frac = unamortised_frac(line.age_years or 0.0, pcf.lifetime_years)
        kg = embodied_kgco2e(line.count, pcf) * frac
        retired_kg += kg
        lines.append({"kind": "retired", "pool": line.pool, "count": line.count, "kgco2e_per_unit":
                      pcf.manufacturing_kgco2e + pcf.transport_kgco2e, "age_years": line.age_years,
                      "unamortised_frac": frac, "tco2e": kg / 1000.0, "source": pcf.source})
    pv_kg = 0.0
    if pv is not None and pv.embodied_kgco2e_per_kw_dc is not None:
        pv_kg = pv.capacity_kw_dc * pv.embodied_kgco2e_per_kw_dc
        amortised_kg += amortised_kgco2e(pv_kg, period_h, pv.lifetime_years)
        lines.append({"kind": "new", "pool": "onsite_pv", "count": pv.capacity_kw_dc, "kgco2e_per_unit":
                      pv.embodied_kgco2e_per_kw_dc, "lifetime_years": pv.lifetime_years, "tco2e": pv_kg / 1000.0,
                      "source": "scenario onsite_pv.embodied_kgco2e_per_kw_dc"})
    counted_retired_kg = retired_kg if hw.count_retired_writeoff else 0.0
    if counted_retired_kg > 0:
        # The write-off is spread like the new hardware (over the new hardware's lifetime),
        # or over the retired hardware's remaining life when nothing new is bought.
        if hw.new:
            life = max(resolve_pcf(line.pcf).lifetime_years for line in hw.new)
        else:
            life = max(resolve_pcf(line.pcf).lifetime_years * unamortised_frac(line.age_years or 0.0,
                       resolve_pcf(line.pcf).lifetime_years) for line in hw.retired) or 1e-9
        amortised_kg += amortised_kgco2e(counted_retired_kg, period_h, life)
    one_off_kg = new_kg + pv_kg + counted_retired_kg
    return {
        "tco2_embodied": amortised_kg / 1000.0,
        "tco2_embodied_one_off": one_off_kg / 1000.0,
        "tco2_embodied_new": (new_kg + pv_kg) / 1000.0,
        "tco2_embodied_retired_unamortised": retired_kg / 1000.0,
        "retired_writeoff_counted": hw.count_retired_writeoff,
        "servers_retired": int(sum(line.count for line in hw.retired)),
        "servers_new": int(sum(line.count for line in hw.new)),
        "hardware": lines,
    }


def payback_months(one_off_tco2: float, operational_saving_tco2: float, period_h: float) -> tuple[float | None, str]:
    """Months of operational saving that repay ``one_off_tco2`` (with a note saying why when ``None``)."""
    if one_off_tco2 <= 0:
        return None, "not applicable: no embodied carbon"
    if operational_saving_tco2 <= 0 or period_h <= 0:
        return None, "never: the scenario saves no operational carbon"
    per_month = operational_saving_tco2 * HOURS_PER_MONTH / period_h
    months = one_off_tco2 / per_month
    return (float(months) if math.isfinite(months) else None), "one-off embodied tCO2e / operational tCO2 saved per month"
