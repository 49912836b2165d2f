"""Write tests/data/distill_corpus/ (python tests/data/make_distill_corpus.py): a small English corpus
for the distillation tests, generated from sentences written for this project (public domain).

Its words come in fixed pairings (an animal and what it eats, a town and its river, a trade and its
tool), so a masked word can be told from its sentence and a few hundred training steps of a tiny
model show held-out accuracy rising above the most-frequent-words baseline.
"""

from __future__ import annotations

import random
from pathlib import Path

ANIMALS = {"cow": "grass", "cat": "fish", "dog": "bones", "horse": "hay", "goat": "leaves", "bird": "seeds",
           "pig": "apples", "rabbit": "carrots", "mouse": "cheese", "bear": "honey"}
TOWNS = {"Millford": "Avon", "Westbury": "Severn", "Ashton": "Thames", "Redcliff": "Trent", "Oakham": "Wye",
         "Elmsworth": "Ouse", "Stonebridge": "Tyne", "Fairhaven": "Tees"}
TRADES = {"baker": "oven", "smith": "hammer", "farmer": "plough", "fisher": "net", "tailor": "needle",
          "carpenter": "saw", "painter": "brush", "miller": "stone"}
NAMES = ["Anna", "Thomas", "Mary", "John", "Alice", "Henry", "Clara", "Peter", "Emma", "Walter"]
TIMES = ["morning", "evening", "afternoon", "night"]
WEATHER = {"winter": "cold", "summer": "warm", "spring": "mild", "autumn": "wet"}
COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "rose": "red", "sun": "yellow"}


def sentences(rng: random.Random) -> list[str]:
    animal, food = rng.choice(sorted(ANIMALS.items()))
    town, river = rng.choice(sorted(TOWNS.items()))
    trade, tool = rng.choice(sorted(TRADES.items()))
    season, feel = rng.choice(sorted(WEATHER.items()))
    thing, colour = rng.choice(sorted(COLOURS.items()))
    name, other = rng.sample(NAMES, 2)
    time = rng.choice(TIMES)
    return [
        f"The {animal} eats {food} every {time}.",
        f"In the {time} the old {animal} went out to look for {food}.",
        f"The town of {town} stands on the river {river}.",
        f"{name} walked along the {river} from {town} to the sea.",
        f"The {trade} picked up the {tool} and began to work.",
        f"Every {trade} in {town} keeps a good {tool} in the shop.",
        f"{name} told {other} that the {season} had been very {feel} this year.",
        f"In {season} the weather is {feel} and the days are {'short' if season == 'winter' else 'long'}.",
        f"The {thing} is {colour}, as everyone in {town} knows.",
        f"{other} asked the {trade} to lend {name} the {tool} for a day.",
        f"When the {animal} had eaten all the {food}, it went to sleep in the barn.",
        f"{name} and {other} sat by the {river} and talked until {time}.",
    ]


def write(directory: Path, seed: int = 7, paragraphs: int = 360) -> None:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for _ in range(paragraphs):
        lines.append(" ".join(rng.sample(sentences(rng), rng.randint(1, 3))))
    half = len(lines) // 2
    (directory / "village.txt").write_text("\n\n".join(lines[:half]) + "\n", encoding="utf-8")
    (directory / "river.txt").write_text("\n\n".join(lines[half:]) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write(Path(__file__).parent / "distill_corpus")
