"""Template captions for a segment of simulated flight, built only from what the truth says is in view.

They stand in for human annotations in tests and the demo, so they must never mention anything that is not in
the segment (an object class absent from ``objects``, water that is not visible) and must vary the way five
annotators would: different openings, word choices, and emphasis (scene, objects, camera).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

T = TypeVar("T")

_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve")

# Words a caption may use for each object class; tests use the same table to check captions against truth.
OBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "car": ("car", "cars", "vehicle", "vehicles"),
    "boat": ("boat", "boats"),
    "person": ("person", "people", "pedestrian", "pedestrians"),
    "building": ("building", "buildings", "house", "houses", "cabin", "cabins", "farm building",
                 "farm buildings"),
}


@dataclass
class SegmentFacts:
    """What a segment shows: the inputs of the captioner (all taken from the rendered truth)."""

    path: str  # straight | orbit | climb | descent | yaw | hover
    view: str  # nadir | oblique
    altitude: tuple[float, float]
    scene: str  # dominant land cover
    covers: dict[str, float]  # mean area fraction per land cover (and road)
    objects: dict[str, int]  # class -> distinct instances seen
    theme: str
    water_name: str = "water"  # sea | lake | pond | water
    building_noun: str = "building"  # house | cabin | farm | building
    on_sand: bool = False  # people are mostly on sand
    extras: dict[str, float] = field(default_factory=dict)


def count_phrase(n: int, singular: str, plural: str, *, article: bool = True) -> str:
    """'a car', 'three cars', 'more than a dozen cars', 'dozens of cars'."""
    if n == 1:
        if not article:
            return f"one {singular}"
        return f"an {singular}" if singular[0] in "aeiou" else f"a {singular}"
    if n <= 12:
        return f"{_NUMBERS[n]} {plural}"
    if n < 24:
        return f"more than a dozen {plural}"
    return f"dozens of {plural}"


def _cap(s: str) -> str:
    s = " ".join(s.split())
    s = s.replace(" ,", ",").replace(" .", ".")
    return s[0].upper() + s[1:] if s else s


class _Words:
    def __init__(self, facts: SegmentFacts, rng: np.random.Generator) -> None:
        self.f = facts
        self.rng = rng

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.rng.integers(len(options)))]

    # ---------------------------------------------------------------------------------------------- scene
    def water(self) -> str:
        return {"sea": "the sea", "lake": "a lake", "pond": "a pond"}.get(self.f.water_name, "the water")

    def scene(self) -> str:
        f = self.f
        s = f.scene
        if s == "farmland":
            return self.pick(["farmland with rows of crops", "a patchwork of crop fields",
                              "cultivated fields", "farm fields striped with crop rows", "agricultural land"])
        if s == "forest":
            return self.pick(["a dense forest", "a thick green tree canopy", "woodland",
                              "a forest of leafy trees"])
        if s == "water":
            if f.water_name == "sea":
                return self.pick(["the sea", "open sea water", "the blue sea", "the coastal waters"])
            if f.water_name == "lake":
                return self.pick(["a lake", "calm lake water", "the surface of a lake"])
            return self.pick(["a pond", "still water"])
        if s == "sand":
            if f.water_name == "sea":
                return self.pick(["a sandy beach", "the beach", "a stretch of sand along the coast"])
            return self.pick(["a sandy shore", "a strip of sand", "sandy ground"])
        if s == "road":
            return self.pick(["a road", "a paved road"])
        # grass
        if f.objects.get("building", 0) >= 3 and f.theme == "suburb":
            return self.pick(["a residential neighbourhood", "a suburban area with lawns and gardens",
                              "a leafy residential area"])
        if f.theme == "lakeside":
            return self.pick(["a green park", "grassy parkland", "an open lawn"])
        return self.pick(["open grassland", "a green meadow", "grassy open ground"])

    def scene_short(self) -> str:
        return {"farmland": "the fields", "forest": "the forest", "water": "the water", "sand": "the sand",
                "road": "the road", "grass": "the grass"}[self.f.scene]

    def secondary(self) -> str:
        """A phrase about the second most prominent land cover, if there is one worth naming."""
        f = self.f
        others = sorted(((v, k) for k, v in f.covers.items() if k not in (f.scene, "road") and v >= 0.12),
                        reverse=True)
        if not others:
            return ""
        k = others[0][1]
        if k == "water":
            water = self.water()
            return self.pick([f"next to {water}", f"beside {water}", f"along the edge of {water}"])
        if k == "sand":
            return self.pick(["next to a sandy shore", "bordered by sand"] if f.water_name != "sea"
                             else ["next to a sandy beach", "along a sandy beach"])
        if k == "forest":
            return self.pick(["bordered by forest", "next to a stand of trees", "at the edge of a forest"])
        if k == "farmland":
            return self.pick(["next to farm fields", "beside cultivated fields"])
        return self.pick(["next to a grassy area", "beside open grass"])

    def layout(self) -> str:
        """A clause about how the scene is arranged: roads, shorelines, field boundaries."""
        f = self.f
        opts = []
        if f.covers.get("road", 0) >= 0.02:
            opts += [f"a road runs through {self.scene_short()}", "a road cuts across the scene",
                     "a paved road crosses the frame"]
        if f.covers.get("water", 0) >= 0.08 and f.covers.get("sand", 0) >= 0.05:
            opts += ["the shoreline separates sand from water", "waves meet the sand along the shore"]
        if f.scene == "farmland":
            opts += ["the fields are divided by narrow tracks and hedges",
                     "crop rows form long parallel stripes"]
        if f.scene == "forest":
            opts += ["the tree crowns cast dark shadows", "the canopy is almost unbroken"]
        if f.covers.get("forest", 0) >= 0.1 and f.scene != "forest":
            opts += ["trees throw long shadows on the ground"]
        return self.pick(opts) if opts else ""

    # ---------------------------------------------------------------------------------------------- camera
    def height(self) -> str:
        a = float(np.mean(self.f.altitude))
        if a < 45:
            return "low"
        if a > 100:
            return "high"
        return ""

    def motion(self, with_height: bool = True) -> str:
        """Verb phrase for the drone's motion, ending where the scene goes ('flies low over')."""
        p, h = self.f.path, self.height() if with_height else ""
        hp = f"{h} " if h else ""
        table = {
            "straight": [f"flies {hp}over", f"glides {hp}over", f"cruises {hp}above",
                         f"moves steadily {hp}over"],
            "orbit": ["circles around", "orbits slowly over", "flies in a wide circle around"],
            "climb": ["rises above", "climbs higher over", "ascends above"],
            "descent": ["descends toward", "drops lower over", "slowly comes down toward"],
            "yaw": ["turns slowly above", "rotates in place above", "pans around above"],
            "hover": [f"hovers {hp}above", "holds still above", "hangs motionless above"],
        }
        return self.pick(table[p])

    def motion_noun(self) -> str:
        return self.pick({
            "straight": ["a forward pass", "a straight flight", "a smooth forward flight"],
            "orbit": ["an orbit", "a circling shot", "an orbiting shot"],
            "climb": ["a rising shot", "a climbing shot", "an ascending shot"],
            "descent": ["a descending shot", "a slow descent", "a lowering shot"],
            "yaw": ["a slow turn in place", "a panning shot", "a rotating shot"],
            "hover": ["a static shot", "a steady hover", "a still aerial shot"],
        }[self.f.path])

    def view(self) -> str:
        if self.f.view == "nadir":
            return self.pick(["top-down view", "bird's-eye view", "overhead view", "straight-down view"])
        return self.pick(["angled aerial view", "oblique aerial view", "tilted aerial view"])

    def view_clause(self) -> str:
        if self.f.view == "nadir":
            return self.pick(["with the camera pointing straight down", "looking straight down",
                              "with the gimbal tilted fully down"])
        return self.pick(["with the camera tilted forward", "looking ahead at an angle",
                          "with an oblique camera"])

    # ---------------------------------------------------------------------------------------------- objects
    def noun(self, cls: str) -> tuple[str, str]:
        if cls == "car":
            return self.pick([("car", "cars"), ("car", "cars"), ("vehicle", "vehicles")])
        if cls == "boat":
            return "boat", "boats"
        if cls == "person":
            return self.pick([("person", "people"), ("person", "people"), ("pedestrian", "pedestrians")])
        b = self.f.building_noun
        if b == "farm":
            return self.pick([("farm building", "farm buildings"), ("building", "buildings")])
        if b in ("house", "cabin"):
            return self.pick([(b, b + "s"), ("building", "buildings")])
        return "building", "buildings"

    def activity(self, cls: str, n: int) -> str:
        """'two cars drive along the road', 'a boat sails across the sea'..."""
        sing, plur = self.noun(cls)
        subj = count_phrase(n, sing, plur)
        one = n == 1
        if cls == "car":
            where = "the road" if self.f.covers.get("road", 0) > 0 else "a road"
            verb = self.pick([("drives", "drive"), ("travels", "travel"), ("moves", "move")])
            return f"{subj} {verb[0] if one else verb[1]} along {where}"
        if cls == "boat":
            verb = self.pick([("sails", "sail"), ("cruises", "cruise"), ("moves", "move")])
            wake = self.pick(["", " leaving a white wake" if one else " leaving white wakes"])
            return f"{subj} {verb[0] if one else verb[1]} across {self._water_def()}{wake}"
        if cls == "person":
            ground = "the beach" if self.f.on_sand else "the grass"
            verb = self.pick([("walks", "walk"), ("strolls", "stroll"), ("is", "are")])
            place = self.pick([f"on {ground}", f"across {ground}"]) if verb[0] != "is" else f"out on {ground}"
            return f"{subj} {verb[0] if one else verb[1]} {place}"
        verb = self.pick([("stands", "stand"), ("sits", "sit")])
        places = ["in the scene", "below"]
        if self.f.covers.get("road", 0) > 0:
            places.append("by the road")
        if self.f.covers.get("forest", 0) >= 0.05:
            places.append("among the trees")
        return f"{subj} {verb[0] if one else verb[1]} {self.pick(places)}"

    def _water_def(self) -> str:
        return {"sea": "the sea", "lake": "the lake", "pond": "the pond"}.get(self.f.water_name, "the water")

    def object_list(self) -> str:
        """'five houses, two cars and a boat'."""
        parts = []
        for cls in ("building", "car", "boat", "person"):
            n = self.f.objects.get(cls, 0)
            if n:
                sing, plur = self.noun(cls)
                parts.append(count_phrase(n, sing, plur))
        if not parts:
            return ""
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    def main_activity(self) -> str:
        """The activity of the most interesting moving class present (boats, cars, people), else ''."""
        for cls in ("boat", "car", "person"):
            n = self.f.objects.get(cls, 0)
            if n:
                return self.activity(cls, n)
        return ""

    def other_activities(self, skip: str) -> list[str]:
        out = []
        for cls in ("boat", "car", "person", "building"):
            n = self.f.objects.get(cls, 0)
            if n and cls != skip:
                out.append(self.activity(cls, n))
        return out


def caption_segment(facts: SegmentFacts, rng: np.random.Generator, count: int = 5) -> list[str]:
    """``count`` distinct captions for one segment (five template families, words drawn from ``rng``)."""
    w = _Words(facts, rng)
    moving = [c for c in ("boat", "car", "person") if facts.objects.get(c, 0)]
    first = moving[0] if moving else ("building" if facts.objects.get("building", 0) else "")

    def family(k: int) -> str:
        if k == 0:  # drone + motion + scene + main activity
            if first == "building":
                sing, plur = w.noun("building")
                some = count_phrase(facts.objects["building"], sing, plur)
                act = f"{w.pick(['showing', 'passing'])} {some}"
                link = ", "
            else:
                act = w.activity(first, facts.objects[first]) if first else w.layout()
                link = w.pick([" while ", " as ", ", and "]) if act else ""
            sec = w.secondary()
            return _cap(f"a drone {w.motion()} {w.scene()}{' ' + sec if sec else ''}{link}{act}.")
        if k == 1:  # view + scene: object list
            objs = w.object_list()
            tail = f", showing {objs}" if objs else (f"; {w.layout()}" if w.layout() else "")
            return _cap(f"{w.view()} of {w.scene()}{tail}.")
        if k == 2:  # objects first, camera last
            if first:
                acts = [w.activity(first, facts.objects[first])] + w.other_activities(first)[:1]
                lead = " and ".join(acts)
                return _cap(f"{lead}, seen in {w.motion_noun()} from a drone {w.view_clause()}.")
            lay = w.layout()
            where = f", where {lay}" if lay else ""
            return _cap(f"{w.motion_noun()} over {w.scene()}{where}, {w.view_clause()}.")
        if k == 3:  # aerial footage + layout
            lay = w.layout()
            objs = w.object_list()
            tail = f", {w.pick(['with', 'featuring', 'including'])} {objs}" if objs else ""
            return _cap(f"aerial footage of {w.scene()}{tail}{'; ' + lay if lay else ''}.")
        # camera-led
        act = w.main_activity() or w.layout()
        h = w.height()
        alt = f" from {'low' if h == 'low' else 'high' if h == 'high' else 'medium'} altitude"
        tail = f"; {act}" if act else ""
        return _cap(f"{w.view_clause()}, the drone {w.motion(False)} {w.scene()}{alt}{tail}.")

    out: list[str] = []
    tries = 0
    k = 0
    while len(out) < count and tries < 60:
        c = family(k % 5)
        if c not in out:
            out.append(c)
        k += 1
        tries += 1
    return out
