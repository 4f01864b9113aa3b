"""The geometry of the app page's sign-ins-per-day bar chart, drawn as inline SVG by admin/_app_usage.html: no
JavaScript, no inline styles (the CSP forbids them); colours come from the site's stylesheet (.usage-chart)."""

from __future__ import annotations

from dataclasses import dataclass

from idp.services.app_usage import DayCount

WIDTH, HEIGHT = 600, 130          # the viewBox; the SVG scales to the card's width
LEFT, TOP, BOTTOM = 30, 8, 108    # plot area: y labels left of LEFT, date labels below BOTTOM
GAP = 0.2                         # share of a day's slot left empty between bars


@dataclass(frozen=True, slots=True)
class Bar:
    day: str          # YYYY-MM-DD
    count: int
    slot_x: float     # the whole day's slot (the tooltip's hover target)
    slot_w: float
    x: float
    y: float
    w: float
    h: float

    @property
    def tooltip(self) -> str:
        return f"{self.day}: {self.count} sign-in{'' if self.count == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    bottom: int = BOTTOM

    @property
    def first(self) -> str:
        return self.bars[0].day if self.bars else ""

    @property
    def last(self) -> str:
        return self.bars[-1].day if self.bars else ""

    @property
    def label(self) -> str:
        """What a screen reader says for the whole chart."""
        days = len(self.bars)
        return (f"Sign-ins per day, {self.first} to {self.last} (UTC): {self.total} in {days} "
                f"day{'' if days == 1 else 's'}, at most {self.peak} a day")


def bar_chart(per_day: tuple[DayCount, ...]) -> Chart:
    """One bar per day (a day without sign-ins is a bar of height 0, so every day keeps its slot and tooltip)."""
    n = max(len(per_day), 1)
    peak = max((d.sign_ins for d in per_day), default=0)
    slot = (WIDTH - LEFT) / n
    plot_h = BOTTOM - TOP
    bars = []
    for i, d in enumerate(per_day):
        h = round(plot_h * d.sign_ins / peak, 2) if peak else 0.0
        x = LEFT + i * slot
        bars.append(Bar(day=d.day.isoformat(), count=d.sign_ins, slot_x=round(x, 2), slot_w=round(slot, 2),
                        x=round(x + slot * GAP / 2, 2), y=round(BOTTOM - h, 2), w=round(slot * (1 - GAP), 2),
                        h=h))
    return Chart(bars=tuple(bars), peak=peak, total=sum(d.sign_ins for d in per_day))
