"""Progress of a tool from its own output: every script of the Tools tab reports with tqdm (probing media,
caching latents, splitting, captioning, diffusers' denoising steps), which redraws one line with carriage
returns. One reader for all of them, so no script needs a progress option of its own. No Tk here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# tqdm's standard bar: "caching latents:  44%|####4     | 4/9 [00:02<00:03,  1.52window/s]" (the description
# and the timing part are optional; a bar without a total shows "12file [00:03, 3.9file/s]" and no percent).
BAR = re.compile(
    r"^(?:(?P<desc>.*?): ?)?\s*(?P<percent>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)"
    r"(?:\s*\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+))?"
)


@dataclass(frozen=True)
class Progress:
    desc: str
    n: int
    total: int
    elapsed: str
    eta: str

    @property
    def fraction(self) -> float:
        return self.n / self.total if self.total else 0.0

    def text(self) -> str:
        parts = [f"{self.desc or 'progress'}: {self.n}/{self.total}"]
        if self.eta:
            parts.append(f"elapsed {self.elapsed}, ETA {self.eta}")
        return "  ·  ".join(parts)


def segments(text: str) -> list[str]:
    """The output's visible lines: of a line redrawn with carriage returns only its last drawing."""
    return [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]


def last_progress(text: str) -> Progress | None:
    """The latest progress bar drawn in `text` (anywhere in it, the last one), or None."""
    for part in reversed(re.split(r"[\r\n]", text)):
        found = BAR.match(part.strip())
        if found:
            return Progress(
                desc=(found.group("desc") or "").strip(),
                n=int(found.group("n")),
                total=int(found.group("total")),
                elapsed=found.group("elapsed") or "",
                eta=found.group("eta") or "",
            )
    return None
