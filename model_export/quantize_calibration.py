"""Sentences the int8 quantizer calibrates on: real English of mixed length and register, written for
this purpose and disjoint from the validation sentences (which gate the result) and from STS-B (which
checks it on held-out pairs). `[MASK]` is replaced by the checkpoint's mask token, as for validation,
because a masked position's activations are what a fill-mask model's head reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model_export.manifest import ATTENTION_MASK, INPUT_IDS
from model_export.sentences import MASK

CALIBRATION_SENTENCES: tuple[str, ...] = (
    "Yes.",
    "Good morning!",
    "Where is the nearest train station?",
    "The soup was too salty, so we ordered pizza instead.",
    "Our flight leaves at 6:45 tomorrow, so set an alarm.",
    "The museum is closed on Mondays and public holidays.",
    "I can't believe it's already December.",
    "She scored 27 points in the second half and won the game almost single-handedly.",
    "Please send the signed contract back to us by the end of the week.",
    "The river [MASK] its banks after three days of heavy rain.",
    "My grandmother grew tomatoes, beans and [MASK] in her garden.",
    "He forgot his [MASK] at home, so he could not pay for the tickets.",
    "The new [MASK] will open next spring on the corner of Main Street.",
    "Scientists have found traces of water ice near the moon's south pole.",
    "Restart the router, wait thirty seconds, then try connecting again.",
    "What time does the bakery open on Saturdays?",
    "The orchestra played Beethoven's fifth symphony to a full house.",
    "A man is riding a bicycle down a steep hill.",
    "Two dogs are playing with a red ball on the beach.",
    "The price of petrol rose by four percent in March, the largest monthly increase since 2022.",
    "Although the film received poor reviews, it earned more than two hundred million dollars worldwide "
    "in its first month, largely thanks to audiences in Asia and South America.",
    "The council has approved plans for a new cycle lane along the seafront, despite objections from "
    "some local businesses who fear the loss of parking spaces will drive customers away.",
    "Patients should not eat or drink anything for at least eight hours before the operation, "
    "although small sips of water may be allowed on the advice of the anaesthetist.",
    "In the late nineteenth century the town grew rapidly around its textile mills, and many of the "
    "red-brick terraces built for the workers still stand today, now popular with young families "
    "who commute to the city.",
    "To install the package, download the archive, unpack it into a folder of your choice, and run "
    "the setup script with administrator rights; the installer will ask where to put the shortcuts.",
    "It was the best of times, it was the worst of times, and nobody in the village could agree which.",
    "The [MASK] of the company announced that profits had doubled.",
    "Thanks, that's really kind of you.",
    "I'd like a table for four at eight o'clock, please.",
    "The cat slept on the warm [MASK] all afternoon.",
    "Heavy snow closed the motorway between junctions 12 and 15 overnight.",
    "Learning a second language as an adult takes patience, daily practice and a tolerance for "
    "making mistakes in front of other people.",
)


def calibration_sentences(mask_token: str | None) -> list[str]:
    """The calibration sentences with `[MASK]` as the checkpoint writes it (a plain word for an encoder)."""
    replacement = mask_token if mask_token is not None else "something"
    return [sentence.replace(MASK, replacement) for sentence in CALIBRATION_SENTENCES]


def calibration_feeds(tokenizer: Any, mask_token: str | None, max_length: int) -> list[dict[str, np.ndarray]]:
    """One unpadded feed per calibration sentence, tokenized by the checkpoint's own tokenizer."""
    feeds = []
    for sentence in calibration_sentences(mask_token):
        encoded = tokenizer([sentence], truncation=True, max_length=max_length, return_tensors="np")
        feeds.append({name: np.asarray(encoded[name], dtype=np.int64) for name in (INPUT_IDS, ATTENTION_MASK)})
    return feeds
