"""The housing sunlight standard of GB 50180-2018 and the counting rules of GB/T 50947-2014, as data.

GB 50180-2018 《城市居住区规划设计标准》 table 4.0.9 (住宅建筑日照标准), by building climate zone (GB 50178) and urban
population (城区常住人口, 50万 = 500,000):

| climate zone        | I, II, III, VII      | IV                   | V, VI   |
| urban population    | >= 50万  | < 50万     | >= 50万  | < 50万     | any     |
| standard day        | 大寒日 (Major Cold)            |          | 冬至日 (winter solstice) |
| sunlight hours      | >= 2 h   | >= 3 h     | >= 3 h   | >= 1 h     | >= 1 h  |
| effective window    | 8:00-16:00 true solar time     |          | 9:00-15:00 true solar time |
| counted from        | the window sill of the lowest floor (底层窗台面)                          |

and clause 4.0.9: housing for the elderly (老年人居住建筑) at least 2 h on 冬至日; new housing in an old-district
renewal project (旧区改建) at least 1 h on 大寒日; and no addition outside an existing building may lower the sunlight
of neighbouring housing below what it had (the scheme comparison, `cim.analysis.planning.compare`).

GB/T 50947-2014 《建筑日照计算参数标准》 fixes how sunlight time is computed: true solar time, the effective window
of the standard day, a computation step of at most 1 minute, window sills (0.9 m above the floor) as the
calculation points, and leaves two counting parameters to the local planning rules, which differ between cities:
the shortest sunlit segment that counts (连续日照时间段的最小值; 5 min in Beijing's rules on 大寒日) and the sweep
angle (扫掠角: sun rays closer than this to the wall plane are not counted, because window reveals cut them off;
arctan(wall depth / window width), 12 degrees in Beijing, 15 degrees in rules derived from a 1.65 m window in a
0.4 m wall). Whether the segments are added up (累计) or only the longest counts (连续) is also a local choice.
`SunlightRule` holds these parameters; docs/planning.md says what we implement and why.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cim.analysis.planning.sun import StandardDay
from cim.errors import InputError

ClimateZone = Literal["I", "II", "III", "IV", "V", "VI", "VII"]
HousingKind = Literal["housing", "elderly", "renewal"]
Counting = Literal["cumulative", "continuous"]

WINDOWS: dict[str, tuple[float, float]] = {"dahan": (8.0, 16.0), "dongzhi": (9.0, 15.0)}
DAY_NAMES = {"dahan": "大寒日", "dongzhi": "冬至日"}


class Requirement(BaseModel):
    """What a dwelling must get: `hours` of sunlight on `day` within `window` (true solar hours)."""

    model_config = ConfigDict(frozen=True)

    day: StandardDay
    hours: float
    window: tuple[float, float]
    basis: str

    @property
    def minutes(self) -> float:
        return self.hours * 60.0

    def describe(self) -> str:
        w0, w1 = self.window
        return f"{DAY_NAMES[self.day]} >= {self.hours:g} h within {w0:02.0f}:00-{w1:02.0f}:00 true solar time"


def requirement(climate_zone: ClimateZone = "II", large_city: bool = True,
                kind: HousingKind = "housing") -> Requirement:
    """The GB 50180-2018 requirement for a dwelling (table 4.0.9 and its clauses).

    Args:
        climate_zone: building climate zone of GB 50178 (I-VII).
        large_city: the city's urban resident population is at least 500,000 (城区常住人口 >= 50万).
        kind: "housing"; "elderly" (老年人居住建筑: 冬至日 >= 2 h); "renewal" (新建住宅 in 旧区改建: 大寒日 >= 1 h).

    Raises:
        InputError: an unknown climate zone or kind.
    """
    if kind == "elderly":
        return Requirement(day="dongzhi", hours=2.0, window=WINDOWS["dongzhi"],
                           basis="GB 50180-2018 4.0.9-1: housing for the elderly, 冬至日 >= 2 h")
    if kind == "renewal":
        return Requirement(day="dahan", hours=1.0, window=WINDOWS["dahan"],
                           basis="GB 50180-2018 4.0.9-3: new housing in old-district renewal, 大寒日 >= 1 h")
    if kind != "housing":
        raise InputError(f"housing kind {kind!r} is not one of housing, elderly, renewal")
    size = "urban population >= 500,000" if large_city else "urban population < 500,000"
    if climate_zone in ("I", "II", "III", "VII"):
        hours = 2.0 if large_city else 3.0
        day: StandardDay = "dahan"
    elif climate_zone == "IV":
        day, hours = ("dahan", 3.0) if large_city else ("dongzhi", 1.0)
    elif climate_zone in ("V", "VI"):
        day, hours = "dongzhi", 1.0
    else:
        raise InputError(f"climate zone {climate_zone!r} is not one of I, II, III, IV, V, VI, VII (GB 50178)")
    return Requirement(day=day, hours=hours, window=WINDOWS[day],
                       basis=f"GB 50180-2018 table 4.0.9: climate zone {climate_zone}, {size}")


class SunlightRule(BaseModel):
    """How sunlit time is counted (GB/T 50947-2014 leaves these to local rules; defaults in docs/planning.md).

    Attributes:
        counting: "cumulative" (add every segment that is long enough, 累计) or "continuous" (only the longest, 连续).
        min_segment_minutes: sunlit segments shorter than this do not count.
        sweep_angle: degrees; the sun must be at least this far from the wall plane (in plan) to count.
        step_seconds: the ray-cast step; at most 60 (GB/T 50947: at most 1 minute). Every change of state between
            two steps is then located to the second by bisection.
    """

    model_config = ConfigDict(frozen=True)

    counting: Counting = "cumulative"
    min_segment_minutes: float = Field(5.0, ge=0.0, le=480.0)
    sweep_angle: float = Field(15.0, ge=0.0, lt=90.0)
    step_seconds: int = Field(60, ge=1, le=60)


__all__ = ["DAY_NAMES", "WINDOWS", "ClimateZone", "Counting", "HousingKind", "Requirement", "SunlightRule",
           "requirement"]
