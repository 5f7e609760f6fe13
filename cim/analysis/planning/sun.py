"""Where the sun is: NREL's Solar Position Algorithm, the standard days (大寒日, 冬至日) and true solar time.

Sun positions come from NREL's SPA (Reda & Andreas, "Solar position algorithm for solar radiation applications",
Solar Energy 76(5), 2004; NREL/TP-560-34302), as implemented by pvlib (`pvlib.spa`, the code behind
`pvlib.solarposition.spa_python`), evaluated on plain epoch seconds so that every year SPA is valid for can be used
(pandas timestamps stop at 2262). SPA is valid from year -2000 to 6000 with an uncertainty of +/-0.0003 degrees;
this module accepts years 1 to 6000 (Python dates start at year 1).

- The standard days are solar terms of the Chinese calendar: 冬至 (winter solstice) is the day the sun's apparent
  geocentric longitude reaches 270 degrees, 大寒 (Major Cold) 300 degrees, as a civil date in China Standard Time
  (UTC+8), found by Newton iteration on SPA's apparent longitude (to well under a second).
- True solar time (真太阳时, the time base of GB 50180-2018 and GB/T 50947-2014) is mean local time plus the equation
  of time: 12:00 is the sun's transit. `true_solar_to_utc` inverts it with SPA's equation of time.
- Directions are given in the grid of the model's projected CRS: the sun's true azimuth minus the meridian
  convergence of the CRS at the site (about 0.45 degrees at the sample city, two minutes of sun travel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import numpy as np
from pvlib import spa

from cim.errors import InputError

StandardDay = Literal["dahan", "dongzhi"]
STANDARD_DAYS: dict[str, tuple[float, int, int, str]] = {
    # key: (apparent solar longitude, month, day of a first guess, Chinese name)
    "dahan": (300.0, 1, 20, "大寒日"),
    "dongzhi": (270.0, 12, 21, "冬至日"),
}
SPA_YEARS = (-2000, 6000)
YEARS = (1, 6000)
CHINA_TZ = timedelta(hours=8)
SUNRISE_ELEVATION = -0.8333  # apparent upper limb on the horizon: 0.5667 refraction + 0.2667 semi-diameter (SPA A.2)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_year(year: int, what: str = "year") -> int:
    """`year` if SPA and Python dates can use it.

    Raises:
        InputError: outside 1..6000 (SPA is valid for -2000..6000; Python dates start at year 1).
    """
    if not isinstance(year, int) or not YEARS[0] <= year <= YEARS[1]:
        raise InputError(f"{what} {year!r} is outside the years this analysis can use ({YEARS[0]} to {YEARS[1]}: "
                         f"NREL's SPA is valid from {SPA_YEARS[0]} to {SPA_YEARS[1]}); pass a year in that range")
    return year


def epoch(dt: datetime) -> float:
    """Seconds since 1970-01-01 UTC of an aware datetime (any year 1..9999)."""
    return (dt - _EPOCH).total_seconds()


def from_epoch(seconds: float) -> datetime:
    """The aware UTC datetime of epoch seconds."""
    return _EPOCH + timedelta(seconds=float(seconds))


def delta_t(year: int, month: int = 6) -> float:
    """TT - UT1 in seconds (Espenak & Meeus polynomials, as pvlib computes it)."""
    return float(spa.calculate_deltat(year, month))


def apparent_longitude(unixtime: np.ndarray, dt: float) -> np.ndarray:
    """The sun's apparent geocentric longitude (degrees, 0..360) at epoch seconds (SPA steps 3.1-3.8)."""
    t = np.atleast_1d(np.asarray(unixtime, np.float64))
    jd = spa.julian_day(t)
    jde = spa.julian_ephemeris_day(jd, dt)
    jce = spa.julian_ephemeris_century(jde)
    jme = spa.julian_ephemeris_millennium(jce)
    big_r = spa.heliocentric_radius_vector(jme)
    theta = spa.geocentric_longitude(spa.heliocentric_longitude(jme))
    x = [spa.mean_elongation(jce), spa.mean_anomaly_sun(jce), spa.mean_anomaly_moon(jce),
         spa.moon_argument_latitude(jce), spa.moon_ascending_longitude(jce)]
    nut = np.empty((2, len(t)))
    spa.longitude_obliquity_nutation(jce, *x, nut)
    lam = spa.apparent_sun_longitude(theta, nut[0], spa.aberration_correction(big_r))
    return np.mod(lam, 360.0)


def solar_term(year: int, day: StandardDay) -> datetime:
    """The instant (UTC) of the solar term `day` ("dahan": 大寒, in January; "dongzhi": 冬至, in December) of `year`.

    Raises:
        InputError: an unknown day or a year outside 1..6000.
    """
    check_year(year)
    if day not in STANDARD_DAYS:
        raise InputError(f"standard day {day!r} is not one of {', '.join(STANDARD_DAYS)} (大寒日, 冬至日)")
    target, month, guess, _ = STANDARD_DAYS[day]
    dt = delta_t(year, month)
    t = epoch(datetime(year, month, guess, tzinfo=UTC))
    for _ in range(8):
        lam = float(apparent_longitude(np.array([t]), dt)[0])
        diff = (target - lam + 180.0) % 360.0 - 180.0
        t += diff / 360.0 * 365.2422 * 86400.0  # the sun moves about 360 degrees a tropical year
        if abs(diff) < 1e-7:
            break
    return from_epoch(t)


def standard_date(year: int, day: StandardDay) -> date:
    """The civil date (China Standard Time, UTC+8) of the solar term `day` of `year`."""
    return (solar_term(year, day) + CHINA_TZ).date()


@dataclass(frozen=True)
class Site:
    """Where the sun is seen from.

    Attributes:
        lon, lat: degrees (CGCS2000 / WGS 84 alike at this precision).
        elevation: metres above sea level (for pressure and parallax).
        convergence: grid azimuth of true north in the model's CRS, degrees clockwise (add to a true azimuth to get
            a grid azimuth).
        pressure: hPa (default: the ISA pressure at `elevation`).
        temperature: degrees C, for refraction.
    """

    lon: float
    lat: float
    elevation: float = 0.0
    convergence: float = 0.0
    pressure: float | None = None
    temperature: float = 0.0

    @property
    def pressure_hpa(self) -> float:
        if self.pressure is not None:
            return float(self.pressure)
        return 1013.25 * (1.0 - 2.25577e-5 * self.elevation) ** 5.25588


@dataclass(frozen=True)
class SunPositions:
    """Sun positions at a series of instants.

    Attributes:
        unixtime: (n,) float64 epoch seconds (UTC).
        elevation: (n,) apparent (refracted) topocentric elevation, degrees.
        elevation_geometric: (n,) topocentric elevation without refraction, degrees.
        azimuth: (n,) true azimuth, degrees clockwise from north.
        equation_of_time: (n,) minutes.
        grid_azimuth: (n,) azimuth in the model's grid (true azimuth + convergence), degrees.
    """

    unixtime: np.ndarray
    elevation: np.ndarray
    elevation_geometric: np.ndarray
    azimuth: np.ndarray
    equation_of_time: np.ndarray
    grid_azimuth: np.ndarray

    def vectors(self) -> np.ndarray:
        """(n, 3) float64 unit vectors towards the sun in the grid frame (x east, y north, z up)."""
        a = np.radians(self.grid_azimuth)
        e = np.radians(self.elevation)
        return np.column_stack([np.sin(a) * np.cos(e), np.cos(a) * np.cos(e), np.sin(e)])


def sun_positions(site: Site, unixtime: np.ndarray, dt: float | None = None) -> SunPositions:
    """SPA positions of the sun seen from `site` at epoch seconds `unixtime`.

    Args:
        site: observer and grid convergence.
        unixtime: (n,) epoch seconds.
        dt: TT - UT1 seconds (default: `delta_t` of the first instant's year).
    """
    t = np.atleast_1d(np.asarray(unixtime, np.float64))
    if dt is None:
        first = from_epoch(t[0])
        dt = delta_t(first.year, first.month)
    _, _, e, e0, phi, eot = spa.solar_position(t, site.lat, site.lon, site.elevation, site.pressure_hpa,
                                               site.temperature, dt, 0.5667)
    return SunPositions(t, np.asarray(e), np.asarray(e0), np.asarray(phi), np.asarray(eot),
                        np.mod(np.asarray(phi) + site.convergence, 360.0))


def true_solar_to_utc(site: Site, day: date, hours: np.ndarray, dt: float | None = None) -> np.ndarray:
    """Epoch seconds (UTC) of true solar times `hours` (0-24) on the civil date `day` at `site`.

    True solar time = UTC + longitude / 15 h + equation of time; solved by fixed-point iteration on SPA's equation of
    time (it changes by well under a second per minute, so three passes settle it to microseconds).
    """
    h = np.atleast_1d(np.asarray(hours, np.float64))
    midnight = epoch(datetime(day.year, day.month, day.day, tzinfo=UTC))
    base = midnight + (h - site.lon / 15.0) * 3600.0
    if dt is None:
        dt = delta_t(day.year, day.month)
    t = base.copy()
    for _ in range(3):
        eot = spa.solar_position(t, site.lat, site.lon, site.elevation, site.pressure_hpa, site.temperature, dt,
                                 0.5667)[5]
        t = base - np.asarray(eot) * 60.0
    return t


@dataclass(frozen=True)
class SunTimes:
    """Sunrise, transit (solar noon) and sunset of a day, as epoch seconds (UTC); NaN when the sun does not rise or
    set that day."""

    sunrise: float
    transit: float
    sunset: float

    def to_dict(self, tz: timedelta = CHINA_TZ) -> dict[str, str | None]:
        def fmt(t: float) -> str | None:
            return None if not math.isfinite(t) else (from_epoch(t) + tz).isoformat(timespec="seconds")[:19]

        return {"sunrise": fmt(self.sunrise), "transit": fmt(self.transit), "sunset": fmt(self.sunset)}


def sun_times(site: Site, day: date) -> SunTimes:
    """Sunrise, solar noon and sunset on `day` at `site`, by root finding on SPA positions.

    Solar noon is true solar time 12:00 (hour angle 0). Sunrise and sunset are when the geometric topocentric
    elevation of the sun's centre is -0.8333 degrees (standard refraction plus the semi-diameter, as SPA's
    appendix A.2 defines them), bracketed on a 10-minute grid and refined by bisection to a millisecond. This is an
    independent path from pvlib's `sun_rise_set_transit_spa` (SPA's interpolation algorithm), which the tests
    compare it with.
    """
    dt = delta_t(day.year, day.month)
    noon = float(true_solar_to_utc(site, day, np.array([12.0]), dt)[0])
    grid = noon + np.arange(-12 * 3600, 12 * 3600 + 1, 600, dtype=np.float64)

    def elev(t: np.ndarray) -> np.ndarray:
        return np.asarray(spa.solar_position(t, site.lat, site.lon, site.elevation, site.pressure_hpa,
                                             site.temperature, dt, 0.5667)[3]) - SUNRISE_ELEVATION

    f = elev(grid)
    up = f > 0

    def crossing(rising: bool) -> float:
        k = np.flatnonzero(~up[:-1] & up[1:]) if rising else np.flatnonzero(up[:-1] & ~up[1:])
        if len(k) == 0:
            return math.nan
        lo, hi = grid[k[0]], grid[k[0] + 1]
        for _ in range(20):  # 600 s / 2**20: under a millisecond
            mid = (lo + hi) / 2
            above = elev(np.array([mid]))[0] > 0
            if above == rising:
                hi = mid
            else:
                lo = mid
        return (lo + hi) / 2

    return SunTimes(crossing(True), noon, crossing(False))


__all__ = ["SPA_YEARS", "STANDARD_DAYS", "Site", "StandardDay", "SunPositions", "SunTimes", "apparent_longitude",
           "check_year", "delta_t", "epoch", "from_epoch", "solar_term", "standard_date", "sun_positions",
           "sun_times", "true_solar_to_utc"]
